# Uses the real qiskit-serverless package (installed as a dependency), not qsflow's shim.
import qiskit_serverless
from qiskit_serverless import get_arguments, save_result

arguments = get_arguments()
circuit = arguments["circuit"]
save_result({
    "module": qiskit_serverless.__file__,
    "version": qiskit_serverless.__version__,
    "n_qubits": circuit.num_qubits,
    "circuit": circuit,
    "in_serverless": qiskit_serverless.is_running_in_serverless(),
})
