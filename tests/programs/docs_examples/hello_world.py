# Qiskit Serverless's first documented program: sample a Bell pair on a fake backend, print, save the counts.
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import SamplerV2
from qiskit_ibm_runtime.fake_provider import FakeVigoV2
from qiskit_serverless import save_result

print("hello world: starting")
pair = QuantumCircuit(2)
pair.h(0)
pair.cx(0, 1)
pair.measure_all()
backend = FakeVigoV2()
isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(pair)
counts = SamplerV2(backend).run([isa]).result()[0].data.meas.get_counts()
save_result(counts)
print("hello world: done")
