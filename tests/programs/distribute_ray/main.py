"""Plain Ray and distribute_task side by side in one job, on the shared cluster."""

import ray
from qiskit_serverless import distribute_task, get, get_arguments, put, save_result

from distribute_helpers import Unlucky, cube, unlucky

ray.init()  # no address: RAY_ADDRESS, set by the runner, points at the shared cluster


@ray.remote(num_cpus=0.5)
def plus_one(x):
    return x + 1


@distribute_task(target={"cpu": 0.5, "resources": {"qsflow_widget": 1}})
def square(x):
    return x * x


arguments = get_arguments()
base = put(arguments["base"])
squares = get([square(base), square(3)])
cubes = get([cube(i) for i in range(arguments["cubes"])])
try:
    get(unlucky(13))
    error = None
except Unlucky as exc:
    error = [type(exc).__name__, str(exc)]
save_result({
    "plain": ray.get(plus_one.remote(41)),
    "squares": squares,
    "cubes": cubes,
    "error": error,
    "gcs_port": int(ray.get_runtime_context().gcs_address.rsplit(":", 1)[1]),
})
