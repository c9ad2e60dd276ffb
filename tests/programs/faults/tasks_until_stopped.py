# Two distributed tasks that run until the job is stopped; each writes its pid first. Nothing is saved.
import os
import time
from pathlib import Path

from qiskit_serverless import distribute_task, get, get_arguments, save_result


@distribute_task(target={"cpu": 0.5})
def linger(pid_dir, index):
    Path(pid_dir, f"{index}.pid").write_text(str(os.getpid()))
    time.sleep(600)
    return index


refs = [linger(get_arguments()["pid_dir"], i) for i in range(2)]
print("tasks submitted", flush=True)
save_result({"finished": get(refs)})
