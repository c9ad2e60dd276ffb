"""A provider function exercising today's program API: loggers, send_error, a result, a pause."""

import time
from pathlib import Path

from qiskit_serverless import get_arguments, get_logger, get_provider_logger, save_result, send_error

arguments = get_arguments()
print("print before")
get_logger().info("first line\nsecond line")
print("print between")
get_provider_logger().warning("provider only\nsecret detail")
get_logger().error("an error line")
send_error("E7", "a recoverable problem", "TimeoutError", args={"attempt": 1})
print("waiting for release", flush=True)

# The test reads the logs of the running job, then creates this file.
release = Path(arguments["release"])
deadline = time.monotonic() + 600
while not release.exists() and time.monotonic() < deadline:
    time.sleep(0.2)
circuit = arguments["circuit"]
save_result({"shots": arguments["shots"], "qubits": circuit.num_qubits, "released": release.exists()})
