"""Reports which process started it: the job's runner process, and what that process has loaded."""

import os

from qiskit_serverless import save_result

runner = os.getppid()
with open(f"/proc/{runner}/cmdline", "rb") as handle:
    command = handle.read().replace(b"\0", b" ").decode()
save_result({"runner_pid": runner, "runner_command": command})
