from qiskit import QuantumCircuit
from qiskit_ibm_runtime import SamplerV2

from qiskit_serverless import get_runtime_service, save_result

service = get_runtime_service()
backend = service.backend("fake_manila")
circuit = QuantumCircuit(2)
circuit.h(0)
circuit.cx(0, 1)
circuit.measure_all()
from qiskit.transpiler import generate_preset_pass_manager

isa = generate_preset_pass_manager(optimization_level=1, backend=backend, seed_transpiler=1).run(circuit)
counts = SamplerV2(mode=backend).run([isa], shots=200).result()[0].data.meas.get_counts()
save_result({"service": type(service).__name__, "shots": sum(counts.values())})
