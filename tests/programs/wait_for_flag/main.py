"""Marks that it started, then waits until the file named by its ``flag`` argument exists, and saves a result."""

import os
import time

from qiskit_serverless import get_arguments, save_result

flag = get_arguments()["flag"]
open(flag + ".started", "w").close()
while not os.path.exists(flag):
    time.sleep(0.1)
save_result({"finished": True})
