# Writes its pid, then sleeps; a stopped job must kill it before it writes "finished".
import os
import sys
import time
from pathlib import Path

from qiskit_serverless import get_arguments

marker = Path(get_arguments()["marker_dir"])
(marker / "pid").write_text(str(os.getpid()))
print("sleeping", flush=True)
time.sleep(120)
(marker / "finished").write_text("yes")
