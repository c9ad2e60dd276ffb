# A Qiskit Serverless program: echo the arguments back with a little derived data.
import os

from qiskit_serverless import get_arguments, save_result

arguments = get_arguments()
print(f"got {sorted(arguments)}")
result = {"arguments": arguments, "env_x": os.environ.get("X"), "cwd_files": sorted(os.listdir("."))}
circuit = arguments.get("circuit")
if circuit is not None:
    result["depth"] = circuit.depth()
    result["circuit"] = circuit
print("saving result")
save_result(result)
