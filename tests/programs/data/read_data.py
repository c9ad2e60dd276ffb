# Reads a tar from /data (written by another function or uploaded by the client), then writes one.
import os
import tarfile

from qiskit_serverless import get_arguments, save_result

arguments = get_arguments()
with tarfile.open(f"/data/{arguments['read']}") as tar:
    payload = tar.extractfile("payload.txt").read().decode()
if arguments.get("write"):
    with open(f"/data/{arguments['write']}", "w") as handle:
        handle.write(payload.upper())
save_result({"payload": payload, "function_data": os.environ.get("FUNCTION_DATA_PATH")})
