"""The seed's parallel workflow, with a fake backend in place of QiskitRuntimeService."""

from time import time

from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime.fake_provider import FakeSherbrooke
from qiskit_serverless import Job, distribute_task, get, get_arguments, save_result, update_status


@distribute_task(target={"cpu": 1})
def transpile_remote(circuit, optimization_level, backend, seed):
    """Transpiles an abstract circuit into an ISA circuit for a given backend."""
    assert backend == "fake_sherbrooke"
    pass_manager = generate_preset_pass_manager(
        optimization_level=optimization_level, backend=FakeSherbrooke(), seed_transpiler=seed
    )
    return pass_manager.run(circuit)


arguments = get_arguments()
update_status(Job.OPTIMIZING_HARDWARE)
start_time = time()
transpile_worker_references = [
    transpile_remote(circuit, arguments["optimization_level"], arguments["backend"], arguments["seed"])
    for circuit in arguments["circuit_list"]
]
transpiled_circuits = get(transpile_worker_references)
end_time = time()
save_result({
    "circuits": transpiled_circuits,
    "metadata": {"resource_usage": {"RUNNING: OPTIMIZING_FOR_HARDWARE": {"CPU_TIME": end_time - start_time}}},
})
