# A distributed task raises: get() re-raises it with its type; with "unhandled" the program lets it end the job.
from qiskit_serverless import distribute_task, get, get_arguments, save_result


@distribute_task(target={"cpu": 0.5})
def divide(a, b):
    return a / b


caught = None
try:
    get(divide(1, 0))
except ZeroDivisionError as error:
    caught = f"{type(error).__name__}: {error}"
if get_arguments().get("unhandled"):
    print("about to divide by zero without a net", flush=True)
    get(divide(2, 0))
save_result({"caught": caught, "after": get(divide(6, 3))})
