"""A job whose distributed task runs until stopped; the task writes its pid where the test can see it."""

import os
import time
from pathlib import Path

from qiskit_serverless import distribute_task, get, get_arguments


@distribute_task(target={"cpu": 0.5})
def linger(pid_file):
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(600)
    return "not stopped"


print("waiting", flush=True)
get(linger(get_arguments()["pid_file"]))
