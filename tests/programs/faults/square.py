# A small job with a checkable result: the square of its argument.
from qiskit_serverless import get_arguments, save_result

n = get_arguments()["n"]
save_result({"n": n, "square": n * n})
