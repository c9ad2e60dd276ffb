# Uses the IBM Quantum credentials a job is given, the way a program does, without ever printing them.
import hashlib
import os

from qiskit_serverless import get_arguments, get_logger, get_runtime_service, save_result, update_status, Job

token = os.environ.get("QISKIT_IBM_TOKEN", "")
print("token given to the job:", bool(token), "instance:", bool(os.environ.get("QISKIT_IBM_INSTANCE")))
get_logger().info("about to open the runtime service")
update_status(Job.WAITING_QPU)
try:  # no network to IBM here: the service cannot be reached, the attempt is the point
    service = get_runtime_service()
    outcome = type(service).__name__
except Exception as exc:  # noqa: BLE001
    outcome = f"refused ({type(exc).__name__})"
print("runtime service:", outcome)
save_result({"token_sha256": hashlib.sha256(token.encode()).hexdigest(), "service": outcome,
             "arguments": get_arguments()})
