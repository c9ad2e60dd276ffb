# The data directory: read a tar the client uploaded to /data, write a new tar there for the client to download.
import io
import tarfile

from qiskit_serverless import get_arguments, save_result

arguments = get_arguments()
with tarfile.open(f"/data/{arguments['read']}") as archive:
    text = archive.extractfile("payload.txt").read().decode()
print(f"read {arguments['read']}: {text}")

answer = f"{text} (seen by the program)".encode()
with tarfile.open(f"/data/{arguments['write']}", "w:gz") as archive:
    member = tarfile.TarInfo("answer.txt")
    member.size = len(answer)
    archive.addfile(member, io.BytesIO(answer))
save_result({"read": text, "written": arguments["write"]})
