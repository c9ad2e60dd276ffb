import tomli_w

from qiskit_serverless import save_result

save_result({"module_file": tomli_w.__file__, "dumped": tomli_w.dumps({"a": 1})})
