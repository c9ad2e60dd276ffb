# Tries to reach data it was not granted: paths on this machine and the qsflow client's file calls.
# Saves, for each attempt, what happened ("read: <content>" or the exception's type and message).
from qiskit_serverless import ServerlessClient, get_arguments, save_result

arguments = get_arguments()
paths = {}
for path in arguments.get("paths", []):
    try:
        with open(path) as handle:
            paths[path] = "read: " + handle.read()
    except Exception as exc:  # noqa: BLE001 - the point is to record every refusal
        paths[path] = f"{type(exc).__name__}: {exc}"

client = ServerlessClient()
calls = {}
for label, method, args in arguments.get("calls", []):
    try:
        calls[label] = "allowed: " + repr(getattr(client, method)(*args))
    except Exception as exc:  # noqa: BLE001
        calls[label] = f"{type(exc).__name__}: {exc}"
save_result({"paths": paths, "calls": calls})
