"""Benchmark distribute_task against raw Ray, on one warm local Ray head (not a test).

    python bench/distribute.py [--tasks 200] [--circuits 32] [--no-job] [--stock]
    python bench/distribute.py --prefect-ray [--tasks 50]

Prints, in one run:
  * per-task cost of 200 trivial tasks in flight (cpu=0.5): raw ``ray.remote`` vs ``distribute_task`` in a
    script, vs ``distribute_task`` with task-run recording on (what a job's program pays), and the ratios;
  * the 32-circuit transpile fan-out (FakeSherbrooke, level 2) vs the same transpile serially in-process;
  * in a fresh job on the embedded server (unless --no-job): the first batch of 50 tasks, measured in the
    program from the first call to the last result, the warm per-task ratio inside the job, and how many
    Prefect task runs the runner recorded for it;
  * with --stock: prefect-ray's own RayTaskRunner (Prefect's task engine in each Ray worker) for comparison;
  * with --prefect-ray (only this): in one fresh job, the first batch of 20 tasks on the prefect-ray engine, then
    per task, warm, in the same program: raw ``ray.remote`` vs the direct engine vs the prefect-ray engine (and
    how much of it the program spends submitting), and the task runs recorded for each engine.

Uses QSFLOW_HOME (default: a fresh temporary home, removed at the end, with its server and head stopped).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

JOB_PROGRAM = textwrap.dedent('''
    import time
    import ray
    from qiskit_serverless import distribute_task, get, get_arguments, save_result

    @distribute_task(target={"cpu": 0.5})
    def square(x):
        return x * x

    @ray.remote(num_cpus=0.5)
    def raw_square(x):
        return x * x

    n = get_arguments()["tasks"]
    start = time.perf_counter()
    get([square(i) for i in range(50)])
    first_batch = time.perf_counter() - start

    def best(submit, reps=3):
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            ray.get(submit())
            times.append(time.perf_counter() - start)
        return min(times) / n

    ray.get([raw_square.remote(i) for i in range(n)])
    raw = best(lambda: [raw_square.remote(i) for i in range(n)])
    distributed = best(lambda: [square(i) for i in range(n)])
    save_result({"first_batch_s": first_batch, "raw_ms": raw * 1e3, "distributed_ms": distributed * 1e3})
''')


ENGINE_PROGRAM = textwrap.dedent('''
    import time
    import ray
    from qiskit_serverless import distribute_task, get, get_arguments, save_result

    @distribute_task(target={"cpu": 0.5}, engine="prefect-ray")
    def square(x):
        return x * x

    @distribute_task(target={"cpu": 0.5}, engine="direct")
    def direct_square(x):
        return x * x

    @ray.remote(num_cpus=0.5)
    def raw_square(x):
        return x * x

    arguments = get_arguments()
    n, first, reps = arguments["tasks"], arguments["first"], arguments["reps"]
    start = time.perf_counter()
    get([square(i) for i in range(first)])
    first_batch = time.perf_counter() - start

    def best(call, fetch):
        total = submit = float("inf")
        for _ in range(reps):
            start = time.perf_counter()
            refs = [call(i) for i in range(n)]
            submitted = time.perf_counter()
            fetch(refs)
            end = time.perf_counter()
            total, submit = min(total, end - start), min(submit, submitted - start)
        return total / n * 1e3, submit / n * 1e3

    ray.get([raw_square.remote(i) for i in range(n)])
    get([direct_square(i) for i in range(n)])
    raw, _ = best(raw_square.remote, ray.get)
    direct, _ = best(direct_square, get)
    prefect_ray, submit = best(square, get)
    save_result({"first_batch_s": first_batch, "raw_ms": raw, "direct_ms": direct, "prefect_ray_ms": prefect_ray,
                 "prefect_ray_submit_ms": submit})
''')


def _best_per_task(run: Callable[[], Any], tasks: int, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times) / tasks


def _circuits(count: int) -> list:
    from qiskit.circuit.random import random_circuit

    return [random_circuit(12, 40, max_operands=2, measure=True, seed=seed) for seed in range(count)]


_MANAGERS: dict[int, Any] = {}


def _pass_manager(seed: int) -> Any:
    """One pass manager per process (a Ray worker unpickles the task, and this cache with it, once)."""
    if seed not in _MANAGERS:
        from qiskit.transpiler import generate_preset_pass_manager
        from qiskit_ibm_runtime.fake_provider import FakeSherbrooke

        _MANAGERS[seed] = generate_preset_pass_manager(optimization_level=2, backend=FakeSherbrooke(),
                                                       seed_transpiler=seed)
    return _MANAGERS[seed]


def bench_local(tasks: int, circuits: int) -> None:
    import ray

    from serverless_compat import distribute_task, get
    from tasks import ray_connection, task_events

    start = time.perf_counter()
    ray_connection.connect()
    print(f"connect to the local head (starting it if needed): {time.perf_counter() - start:.1f} s")

    @ray.remote(num_cpus=0.5)
    def raw_square(x: int) -> int:
        return x * x

    @distribute_task(target={"cpu": 0.5})
    def square(x: int) -> int:
        return x * x

    get([square(i) for i in range(tasks)])
    ray.get([raw_square.remote(i) for i in range(tasks)])  # warm workers for both
    raw = _best_per_task(lambda: ray.get([raw_square.remote(i) for i in range(tasks)]), tasks)
    plain = _best_per_task(lambda: get([square(i) for i in range(tasks)]), tasks)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[task_events.EVENTS_ENV] = str(Path(tmp) / "events.jsonl")
        recorded = _best_per_task(lambda: get([square(i) for i in range(tasks)]), tasks)
        del os.environ[task_events.EVENTS_ENV]
    print(f"{tasks} trivial tasks in flight, warm, best of 3 (per task):")
    print(f"  raw ray.remote                        {raw * 1e3:7.2f} ms   1.0x")
    print(f"  distribute_task, script               {plain * 1e3:7.2f} ms  {plain / raw:4.1f}x")
    print(f"  distribute_task, recording (in a job) {recorded * 1e3:7.2f} ms  {recorded / raw:4.1f}x")

    @distribute_task(target={"cpu": 1})
    def transpile_remote(circuit: Any, seed: int) -> Any:
        return _pass_manager(seed).run(circuit)

    batch = _circuits(circuits)
    fan_outs = []
    for _ in range(2):  # the first round also pays each worker's qiskit import and backend load
        start = time.perf_counter()
        parallel = get([transpile_remote(c, 7) for c in batch])
        fan_outs.append(time.perf_counter() - start)
    manager = _pass_manager(7)
    start = time.perf_counter()
    serial = [manager.run(c) for c in batch]
    in_process = time.perf_counter() - start
    assert parallel == serial, "the fan-out transpiled differently from the serial run"
    cpus = ray.cluster_resources().get("CPU", 0)
    cold, warm = fan_outs
    print(f"{circuits}-circuit transpile (FakeSherbrooke, level 2) on {cpus:g} CPUs: serial in-process "
          f"{in_process:.1f} s; fan-out first {cold:.1f} s ({in_process / cold:.2f}x), "
          f"warm {warm:.1f} s ({in_process / warm:.2f}x)")


def bench_job(client: Any, tasks: int) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from deployments.connection import prefect_api
    from serverless_compat import QiskitFunction

    with tempfile.TemporaryDirectory() as program_dir:
        Path(program_dir, "bench_program.py").write_text(JOB_PROGRAM)
        function = client.upload(QiskitFunction(title="bench-distribute", entrypoint="bench_program.py",
                                                working_dir=program_dir))
    start = time.perf_counter()
    job = function.run(tasks=tasks)
    result = job.result(cadence=0.5)
    wall = time.perf_counter() - start
    expected = 50 + 3 * tasks
    with prefect_api(client.host) as api:
        deadline = time.monotonic() + 120
        while True:
            runs = []
            while len(runs) % 200 == 0:  # the API pages at 200
                page = api.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[job.job_id])),
                                          limit=200, offset=len(runs))
                runs += page
                if not page:
                    break
            if len(runs) >= expected or time.monotonic() > deadline:
                break
            time.sleep(1)
    ratio = result["distributed_ms"] / result["raw_ms"]
    print(f"fresh job (run() -> DONE {wall:.1f} s): first batch of 50 tasks {result['first_batch_s']:.2f} s; "
          f"{tasks} tasks warm: raw {result['raw_ms']:.2f} ms, distribute_task {result['distributed_ms']:.2f} ms "
          f"per task ({ratio:.1f}x); task runs recorded: {len(runs)} of {expected}")


def _all_task_runs(api: Any, job_id: str) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list = []
    while True:  # the API pages at 200
        page = api.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[job_id])),
                                  limit=200, offset=len(runs))
        runs += page
        if len(page) < 200:
            return runs


def bench_prefect_ray(client: Any, tasks: int, first: int = 20, reps: int = 2) -> None:
    """The prefect-ray engine against raw Ray and the direct engine, in one fresh job on the same warm head."""
    from deployments.connection import prefect_api
    from serverless_compat import QiskitFunction

    with tempfile.TemporaryDirectory() as program_dir:
        Path(program_dir, "bench_engines.py").write_text(ENGINE_PROGRAM)
        function = client.upload(QiskitFunction(title="bench-engines", entrypoint="bench_engines.py",
                                                working_dir=program_dir))
    start = time.perf_counter()
    job = function.run(tasks=tasks, first=first, reps=reps)
    result = job.result(cadence=0.5)
    wall = time.perf_counter() - start
    expected = {"prefect-ray": first + reps * tasks, "direct": (1 + reps) * tasks}
    with prefect_api(client.host) as api:
        deadline = time.monotonic() + 120
        while True:
            runs = [r for r in _all_task_runs(api, job.job_id) if r.state_type and r.state_type.value == "COMPLETED"]
            counts = {"prefect-ray": sum("engine:prefect-ray" in r.tags for r in runs)}
            counts["direct"] = len(runs) - counts["prefect-ray"]
            if counts == expected or time.monotonic() > deadline:
                break
            time.sleep(1)
    raw = result["raw_ms"]
    print(f"prefect-ray engine, fresh job (run() -> DONE {wall:.1f} s): first batch of {first} tasks "
          f"{result['first_batch_s']:.2f} s")
    print(f"{tasks} trivial tasks in flight, warm, best of {reps}, in the job's program (per task):")
    print(f"  raw ray.remote                 {raw:7.2f} ms   1.0x")
    print(f"  distribute_task, direct        {result['direct_ms']:7.2f} ms  {result['direct_ms'] / raw:5.1f}x")
    print(f"  distribute_task, prefect-ray   {result['prefect_ray_ms']:7.2f} ms  "
          f"{result['prefect_ray_ms'] / raw:5.1f}x   (submitting: {result['prefect_ray_submit_ms']:.2f} ms)")
    print(f"  completed task runs recorded: prefect-ray {counts['prefect-ray']} of {expected['prefect-ray']}, "
          f"direct {counts['direct']} of {expected['direct']}")


def bench_stock(tasks: int) -> None:
    from prefect import flow, task
    from prefect_ray import RayTaskRunner
    from prefect_ray.context import remote_options

    from tasks.ray_connection import cluster_address

    @task(persist_result=False)
    def square(x: int) -> int:
        return x * x

    @flow(task_runner=RayTaskRunner(address=cluster_address()), persist_result=False)
    def stock() -> list[float]:
        results = []
        for _ in range(2):
            start = time.perf_counter()
            with remote_options(num_cpus=0.5):
                futures = [square.submit(i) for i in range(tasks)]
            [f.result() for f in futures]
            results.append(time.perf_counter() - start)
        return results

    first, warm = stock()
    print(f"prefect-ray RayTaskRunner, {tasks} tasks: first {first:.1f} s, warm {warm / tasks * 1e3:.1f} ms per task")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=None, help="default 200 (50 with --prefect-ray)")
    parser.add_argument("--circuits", type=int, default=32)
    parser.add_argument("--no-job", action="store_true", help="skip the in-job numbers (no Prefect server)")
    parser.add_argument("--stock", action="store_true", help="also time prefect-ray's RayTaskRunner")
    parser.add_argument("--prefect-ray", action="store_true",
                        help="only compare the prefect-ray engine with raw Ray and the direct engine, in a job")
    args = parser.parse_args()
    if args.tasks is None:
        args.tasks = 50 if args.prefect_ray else 200

    own_home = not os.environ.get("QSFLOW_HOME")
    if own_home:
        os.environ["QSFLOW_HOME"] = tempfile.mkdtemp(prefix="qsflow-bench-")
    from deployments import ray_cluster, server

    try:
        if args.prefect_ray:
            from serverless_compat import ServerlessClient

            from tasks import ray_connection

            start = time.perf_counter()
            client = ServerlessClient()
            ray_connection.connect()  # the head, warm before the job starts
            print(f"embedded Prefect server and local Ray head ready in {time.perf_counter() - start:.1f} s")
            bench_prefect_ray(client, args.tasks)
            return
        bench_local(args.tasks, args.circuits)
        if not args.no_job or args.stock:
            from serverless_compat import ServerlessClient

            start = time.perf_counter()
            client = ServerlessClient()
            print(f"embedded Prefect server ready in {time.perf_counter() - start:.1f} s")
            if not args.no_job:
                bench_job(client, args.tasks)
            if args.stock:
                from deployments.connection import prefect_api

                with prefect_api(client.host):
                    bench_stock(args.tasks)
    finally:
        if own_home:
            server.stop()
            ray_cluster.stop()
            shutil.rmtree(os.environ["QSFLOW_HOME"], ignore_errors=True)


if __name__ == "__main__":
    main()
