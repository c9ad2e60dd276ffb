"""distribute_task with the prefect-ray engine inside a job: values, put refs, chained futures, errors, resources.

``square``, ``assigned``, ``total`` and ``unlucky`` choose the engine on the decorator; ``cube`` takes the default
(QSFLOW_TASK_ENGINE, else prefect-ray); ``plain`` pins the direct engine.
"""

import time

import ray
from qiskit_serverless import distribute_task, get, get_arguments, get_refs_by_status, put, save_result


class Unlucky(LookupError):
    pass


@distribute_task(target={"cpu": 0.5}, engine="prefect-ray")
def square(x):
    print(f"squaring {x}")
    return x * x


@distribute_task(target={"cpu": 0.5, "mem": 64 * 1024 * 1024, "resources": {"qsflow_widget": 1}},
                 engine="prefect-ray")
def assigned():
    """The task's Ray resources, and Qiskit's one-thread switch as the task sees it (tasks.qiskit_threads)."""
    import os
    return ray.get_runtime_context().get_assigned_resources(), os.environ.get("QISKIT_IN_PARALLEL")


@distribute_task(target={"cpu": 0.5}, engine="prefect-ray")
def total(values, offset):
    return sum(values) + offset


@distribute_task(target={"cpu": 0.5}, engine="prefect-ray")
def unlucky(x):
    raise Unlucky(f"{x} is unlucky")


@distribute_task(target={"cpu": 0.5})
def cube(x):
    return x ** 3


@distribute_task(target={"cpu": 0.5, "resources": {"qsflow_widget": 0.5}})
def held(seconds):
    """Runs ``seconds``; the test puts a Prefect tag concurrency limit of 1 on this target's resource tag."""
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


_CALLS = []  # module state of the program: each Ray worker keeps its own copy across the calls it runs


@distribute_task(target={"cpu": 0.5})
def remember():
    import os
    _CALLS.append(1)
    return os.getpid(), len(_CALLS)


@distribute_task(target={"cpu": 0.5}, engine="direct")
def plain(x):
    return x + 1


arguments = get_arguments()
start = time.perf_counter()
refs = [square(i) for i in range(arguments["tasks"])]
pending, rounds = refs, 0
while pending:
    _, pending = get_refs_by_status(pending, timeout=120)
    rounds += 1
squares = get(refs)
first_batch = time.perf_counter() - start

values = put(list(range(10)))
try:
    get(unlucky(13))
    error = None
except Unlucky as exc:
    error = [type(exc).__name__, str(exc)]
plain_value = get(plain(1))
ray_refs = [square(0), square(1)]
ray_waited, _ = ray.wait(ray_refs, num_returns=2, timeout=120)  # code written for plain Ray works on them
held_spans = get([held(1.5), held(1.5)])
remembered = [get(remember()) for _ in range(8)]
cube_refs = [cube(i) for i in range(3)]
save_result({
    "ref_type": type(refs[0]).__name__,
    "cube_ref_type": type(cube_refs[0]).__name__,
    "squares": squares,
    "first_batch_s": first_batch,
    "assigned": get(assigned()),
    "total_of_put": get(total(values, 1)),
    "total_of_future": get(total([1, 2], square(3))),
    "error": error,
    "cubes": get(cube_refs),  # last: the program ends right after these tasks
    "plain": plain_value,
    "held": held_spans,
    "ray_get": ray.get(ray_refs),
    "ray_waited": len(ray_waited),
    "remembered": remembered,
})
