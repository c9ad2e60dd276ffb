# A Qiskit Serverless program as written for its release, run unchanged: its function pins a real
# qiskit-serverless release (0.16 on), so `qiskit_serverless` here is that package, not qsflow's shim.
import os

import qiskit_serverless
from qiskit_serverless import get_arguments, save_result

arguments = get_arguments()
circuit = arguments["circuit"]

try:  # update_status and Job.MAPPING exist from 0.22 on
    from qiskit_serverless import Job, update_status
except ImportError:
    status_updated = None
else:
    status_updated = update_status(Job.MAPPING)

if arguments.get("without_gateway"):
    # As under a runner that gives no gateway token (Qiskit Serverless's Ray and local clients):
    # releases up to 0.32 then print the result between stdout markers.
    os.environ.pop("ENV_JOB_GATEWAY_TOKEN", None)

print("program ran with qiskit-serverless", qiskit_serverless.__version__)
save_result({
    "version": qiskit_serverless.__version__,
    "module": qiskit_serverless.__file__,
    "circuit": circuit,
    "depth": circuit.depth(),
    "status_updated": status_updated,
    "label": arguments["label"],
})
