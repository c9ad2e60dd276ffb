# Writes a tar into /data by absolute path, as Qiskit Serverless programs do.
import io
import os
import tarfile

from qiskit_serverless import get_arguments, save_result

name = get_arguments()["name"]
with tarfile.open(f"/data/{name}", "w:gz") as tar:
    payload = b"written by a job"
    info = tarfile.TarInfo("payload.txt")
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))
save_result({"data_path": os.environ["DATA_PATH"], "listing": sorted(os.listdir("/data"))})
