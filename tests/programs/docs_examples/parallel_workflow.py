# A parallel workflow: one distributed task per circuit transpiles it, get() collects them, then one batch is sampled.
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import SamplerV2
from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2
from qiskit_serverless import distribute_task, get, get_arguments, save_result


@distribute_task(target={"cpu": 1})
def transpile_one(index, circuit, backend_name):
    backend = FakeProviderForBackendV2().backend(backend_name)
    print(f"task {index}: transpiling")
    return generate_preset_pass_manager(backend=backend, optimization_level=1).run(circuit)


arguments = get_arguments()
circuits = arguments["circuits"]
backend_name = arguments["backend_name"]
references = [transpile_one(index, circuit, backend_name) for index, circuit in enumerate(circuits)]
print(f"launched {len(references)} tasks")
isa_circuits = get(references)
print(f"collected {len(isa_circuits)} circuits")
backend = FakeProviderForBackendV2().backend(backend_name)
results = SamplerV2(backend).run(isa_circuits).result()
save_result({"results": [result.data.meas.get_counts() for result in results],
             "isa_circuits": isa_circuits})
