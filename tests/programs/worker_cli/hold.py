"""Holds a worker slot for a few seconds; reports which worker ran it and what started its runner process."""

import os
import time

from qiskit_serverless import get_arguments, save_result

time.sleep(get_arguments()["seconds"])
with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
    runner_command = handle.read().replace(b"\0", b" ").decode()
save_result({"worker": os.environ.get("PREFECT__WORKER_NAME"), "runner_command": runner_command})
