"""Holds a worker slot for a few seconds; reports which worker ran it and what started it."""

import os
import time

from qiskit_serverless import get_arguments, save_result

time.sleep(get_arguments()["seconds"])
with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
    parent_command = handle.read().replace(b"\0", b" ").decode()
save_result({"worker": os.environ.get("PREFECT__WORKER_NAME"), "parent_command": parent_command})
