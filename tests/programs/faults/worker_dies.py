# Ray workers die mid-task (os._exit) and a task raises once: what retries do.
import os
from pathlib import Path

from qiskit_serverless import distribute_task, get, get_arguments, save_result

markers = Path(get_arguments()["markers"])


@distribute_task(target={"cpu": 0.5})  # Qiskit Serverless's signature: Ray's defaults (a lost worker: 3 retries)
def dies_once():
    path = markers / "died-once"
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(1)
    return f"survived in {os.getpid()}"


@distribute_task(target={"cpu": 0.5}, retries=0)  # qsflow's opt-in: no second try
def dies_without_retries():
    os._exit(1)


@distribute_task(target={"cpu": 0.5}, retries=2)  # qsflow's opt-in: an exception is retried too
def raises_once():
    path = markers / "raised-once"
    if not path.exists():
        path.write_text("1")
        raise RuntimeError("first try fails")
    return "second try"


result = {"once": get(dies_once()), "raises_once": get(raises_once())}
try:
    get(dies_without_retries())
except Exception as error:  # noqa: BLE001 - recorded for the test
    result["no_retries"] = f"{type(error).__name__}: {error}"
save_result(result)
