# The seed's parallel transpile program (Qiskit Serverless documentation, "Parallel workflows"),
# unchanged except for how the backend is found: names starting with "fake_" come from
# qiskit_ibm_runtime's fake provider, so the program also runs with no IBM Quantum account.
from time import time

from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import QiskitRuntimeService
from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2
from qiskit_serverless import Job, distribute_task, get, get_arguments, save_result, update_status


def load_backend(name):
    if name.startswith("fake_"):
        return FakeProviderForBackendV2().backend(name)
    return QiskitRuntimeService().backend(name)


@distribute_task(target={"cpu": 1})
def transpile_remote(circuit, optimization_level, backend):
    """Transpiles an abstract circuit (or list of circuits) into an ISA circuit for a given backend."""
    pass_manager = generate_preset_pass_manager(
        optimization_level=optimization_level,
        backend=load_backend(backend),
    )
    isa_circuit = pass_manager.run(circuit)
    return isa_circuit


arguments = get_arguments()
circuit = arguments.get("circuit")
optimization_level = arguments.get("optimization_level")
backend = arguments.get("backend")

update_status(Job.OPTIMIZING_HARDWARE)

start_time = time()
transpile_worker_references = [
    transpile_remote(circuit, optimization_level, backend)
    for circuit in arguments.get("circuit_list")
]

transpiled_circuits = get(transpile_worker_references)
end_time = time()

result = {
    "circuits": transpiled_circuits,
    "metadata": {
        "resource_usage": {
            "RUNNING: OPTIMIZING_FOR_HARDWARE": {
                "CPU_TIME": end_time - start_time,
                "QPU_TIME": 0,
            },
        }
    },
}

save_result(result)
