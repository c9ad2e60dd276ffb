# Ray workers die mid-task (os._exit): once (Ray runs the task again) and every time (the error reaches get()).
import os
from pathlib import Path

from qiskit_serverless import distribute_task, get, get_arguments, save_result


@distribute_task(target={"cpu": 0.5})
def dies_once(marker):
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(1)
    return f"survived in {os.getpid()}"


@distribute_task(target={"cpu": 0.5})
def always_dies():
    os._exit(1)


result = {"once": get(dies_once(get_arguments()["marker"]))}
try:
    get(always_dies())
except Exception as error:  # noqa: BLE001 - recorded for the test
    result["always"] = f"{type(error).__name__}: {error}"
save_result(result)
