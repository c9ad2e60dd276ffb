# Arguments in, results out: a circuit and a backend name, checked, transpiled and sampled.
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import SamplerV2
from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2
from qiskit_serverless import get_arguments, save_result

arguments = get_arguments()
circuit = arguments.get("circuit")
backend_name = arguments.get("backend_name")
if not isinstance(circuit, QuantumCircuit):
    raise ValueError("circuit must be a QuantumCircuit")
if not isinstance(backend_name, str) or not backend_name:
    raise ValueError("backend_name must be a non-empty string")
print(f"arguments: circuit of {circuit.num_qubits} qubits, backend {backend_name}")

backend = FakeProviderForBackendV2().backend(backend_name)
isa = generate_preset_pass_manager(backend=backend, optimization_level=3).run(circuit)
counts = SamplerV2(backend).run([isa]).result()[0].data.meas.get_counts()
save_result({"quasi_dists": counts, "backend": backend.name, "isa_circuit": isa})
