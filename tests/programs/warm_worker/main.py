"""Reports which processes started it: the job's runner (the process reading its output) and its own parent,
with what they have loaded, and whether Qiskit was loaded before the program imported anything."""

import os
import sys

preloaded = "qiskit" in sys.modules

from qiskit_serverless import save_result  # noqa: E402

from deployments.processes import output_reader  # noqa: E402  (qsflow's own modules are on a job's path)


def command(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode()


runner = output_reader(os.getpid())
save_result({"runner_pid": runner, "runner_command": command(runner), "parent_command": command(os.getppid()),
             "preloaded": preloaded})
