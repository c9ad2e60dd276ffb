# A cluster job: reads the client's file from /data, writes one of its own, and says which worker ran it.
import os
import time

from qiskit_serverless import get_arguments, save_result

arguments = get_arguments()
n = arguments["n"]
with open(f"/data/{arguments['read']}") as handle:
    content = handle.read()
time.sleep(arguments.get("sleep", 0))
if arguments.get("write"):
    with open(f"/data/{arguments['write']}", "w") as handle:
        handle.write(f"{n} squared is {n * n}\n")
save_result({"n": n, "square": n * n, "read": content,
             # Prefect's process worker names itself in its flow runs' environment.
             "worker": os.environ.get("PREFECT__WORKER_NAME"), "parent_pid": os.getppid()})
