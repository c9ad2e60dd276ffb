from qiskit_serverless import save_result

from .helpers import VALUE  # a relative import at top level: the program cannot start

save_result({"value": VALUE})
