"""Benchmark distribute_task against raw Ray and serial work, on one warm local Ray head (not a test).

    python bench/distribute.py [--tasks 200] [--circuits 32] [--no-job] [--stock]

Prints, in one run on the same warm head:
  * in a plain script (no job: calls run as plain Ray tasks): per-task cost of 200 trivial tasks in flight
    (cpu=0.5), raw ``ray.remote`` vs ``distribute_task`` vs ``distribute_task`` with the direct engine's
    task-run recording on;
  * in a fresh job on the embedded server (unless --no-job), measured inside the job's program:
      - the first batch of 50 tasks on the default engine (Prefect tasks on RayTaskRunner), from the first call
        to the last result, and from the program's start;
      - per task, warm, 200 in flight: raw ``ray.remote`` vs the default engine (and how much of it the program
        spends submitting) vs the direct engine; each the median of several rounds run right after a warm-up
        round (raw Ray: at least 5, it is cheap), every round printed;
      - the 32-circuit transpile fan-out (FakeSherbrooke, level 2, cpu=1 tasks, default engine) vs the raw
        ``ray.remote`` fan-out (as plain Ray runs it, and with qsflow's QPY transport and Qiskit thread rule)
        and the same transpile serially in the program's process (all warm, medians of warm rounds, the
        RAYON_NUM_THREADS each side sees printed), checked equal;
      - the default engine's floor: the function its Ray workers run per task, called in the program's
        process one task after another (Prefect's task engine alone, CPU per task);
      - the Prefect server's CPU time per task of each engine, and how many task runs were recorded;
  * with --stock: prefect-ray's own RayTaskRunner in a local flow (Prefect's context rebuilt per task).

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
    PROGRAM_START = time.perf_counter()
    import os
    import statistics
    import ray
    from qiskit_serverless import distribute_task, get, get_arguments, save_result

    @distribute_task(target={"cpu": 0.5})
    def square(x):
        return x * x

    @distribute_task(target={"cpu": 0.5}, engine="direct")
    def direct_square(x):
        return x * x

    @ray.remote(num_cpus=0.5)
    def raw_square(x):
        return x * x

    _MANAGERS = {}

    def pass_manager(seed):
        if seed not in _MANAGERS:
            from qiskit.transpiler import generate_preset_pass_manager
            from qiskit_ibm_runtime.fake_provider import FakeSherbrooke
            _MANAGERS[seed] = generate_preset_pass_manager(optimization_level=2, backend=FakeSherbrooke(),
                                                           seed_transpiler=seed)
        return _MANAGERS[seed]

    @distribute_task(target={"cpu": 1})
    def transpile_remote(circuit, seed):
        return pass_manager(seed).run(circuit)

    @ray.remote(num_cpus=1)
    def raw_transpile(circuit, seed):
        from tasks import circuit_transport
        circuit_transport.reset()  # plain Ray pickles circuits (a worker a distributed task ran on sends QPY)
        return pass_manager(seed).run(circuit)

    @ray.remote(num_cpus=1)
    def raw_transpile_qpy(circuit, seed):
        from tasks import circuit_transport, qiskit_threads
        with qiskit_threads.sized_to_task():  # Qiskit on one thread in a 1-CPU task, as in a distributed task
            value = pass_manager(seed).run(circuit)
        circuit_transport.register_if_loaded()  # as a distributed task's worker does: the value goes as QPY
        return value

    def transpile_seeded(count, seed):
        """Builds its circuits and pass manager from seeds (small arguments: the cache key hashes them; and no
        program state captured: the program's pass-manager cache would travel with the function)."""
        from qiskit.circuit.random import random_circuit
        from qiskit.transpiler import generate_preset_pass_manager
        from qiskit_ibm_runtime.fake_provider import FakeSherbrooke
        manager = generate_preset_pass_manager(optimization_level=2, backend=FakeSherbrooke(), seed_transpiler=seed)
        transpiled = [manager.run(random_circuit(20, 60, max_operands=2, measure=True, seed=s)) for s in range(count)]
        # a compact value: six transpiled 127-qubit circuits pickle to ~5 MB in ~1.3 s of CPU, as long as the
        # transpile itself, and a cached value pays its (de)serialization on every hit
        return [(c.depth(), dict(c.count_ops())) for c in transpiled]

    transpile_batch = distribute_task(target={"cpu": 1})(transpile_seeded)
    if get_arguments().get("cache"):
        transpile_batch_cached = distribute_task(target={"cpu": 1}, cache=True)(transpile_seeded)

    def circuits(count, qubits=12, depth=40):
        from qiskit.circuit.random import random_circuit
        return [random_circuit(qubits, depth, max_operands=2, measure=True, seed=s) for s in range(count)]

    def server_cpu():
        pid = get_arguments()["server_pid"]
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / __import__("os").sysconf("SC_CLK_TCK")

    arguments = get_arguments()
    n, first, reps = arguments["tasks"], arguments["first"], arguments["reps"]
    start = time.perf_counter()
    get([square(i) for i in range(first)])
    first_batch = time.perf_counter() - start
    from_start = time.perf_counter() - PROGRAM_START

    def settle(limit=30.0, quiet=5.5):
        """Wait until the Prefect server has been idle for ``quiet`` seconds: an engine's events still being
        recorded would be counted against the next engine's window otherwise (Prefect's event persister holds
        events up to 5 s, its task-run recorder here up to 1 s)."""
        deadline = time.monotonic() + limit
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            before = server_cpu()
            time.sleep(0.5)
            if server_cpu() - before >= 0.1:  # busier than its idle polling
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= quiet:
                return

    def per_task(call, fetch, rounds):
        """Median per-task time of ``rounds`` timed rounds of n calls, each engine warmed by one untimed round
        just before (Ray stops idle workers above one per CPU within seconds: a warm-up done long before, or a
        settle in between, leaves the next round starting workers again); also the median submit time and the
        Prefect server's CPU per task over the warm-up and timed rounds, until it is idle again."""
        settle()
        cpu = server_cpu()  # from here to idle again: the server's work for the warm-up and timed rounds
        fetch([call(i) for i in range(n)])
        totals, submits = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            refs = [call(i) for i in range(n)]
            submitted = time.perf_counter()
            fetch(refs)
            end = time.perf_counter()
            totals.append((end - start) / n * 1e3)
            submits.append((submitted - start) / n * 1e3)
        settle()
        return {"median_ms": statistics.median(totals), "rounds_ms": totals, "submit_ms": statistics.median(submits),
                "server_cpu_ms": (server_cpu() - cpu) / ((1 + rounds) * n) * 1e3}

    raw = per_task(raw_square.remote, ray.get, max(reps, 5))  # cheap: more rounds, a steadier median
    direct = per_task(direct_square, get, reps)
    default = per_task(square, get, reps)

    def engine_alone(count, warm=20):
        """What a job's Ray worker runs for each task of the default engine (tasks.job_task_runner._run_task: the
        job's context hydrated once, Prefect's task engine, the run built locally), called here in the program's
        process, one trivial task after another, no Ray in between: its CPU per task (all of this process's
        threads, Prefect's events worker's included) is what the default engine cannot go below; the server's
        CPU comes on top."""
        import uuid
        from tasks import job_task_runner, prefect_ray_engine
        runner = prefect_ray_engine.job_context().task_runner
        shared_context = list(runner._shared_context())
        shared_task = list(runner._shared_task(prefect_ray_engine.prefect_task(square)))

        def one(i):
            value = job_task_runner._run_task(shared_task=shared_task, task_run_id=uuid.uuid4(),
                                              shared_context=shared_context, parameters={"x": i},
                                              dependencies={}, return_type="result")
            assert value == i * i

        settle()
        for i in range(warm):
            one(i)
        cpu, start = time.process_time(), time.perf_counter()
        for i in range(count):
            one(i)
        return {"cpu_ms": (time.process_time() - cpu) / count * 1e3,
                "wall_ms": (time.perf_counter() - start) / count * 1e3, "runs": warm + count}

    alone = engine_alone(n)

    batch = circuits(arguments["circuits"])

    @ray.remote(num_cpus=1)
    def worker_rayon():
        return os.environ.get("RAYON_NUM_THREADS")

    # Like with like: the first round of each also pays its workers' qiskit import and pass-manager build (each
    # function keeps its own cache); then warm rounds, alternating, compared by their medians.
    # Raw Ray twice: as plain Ray does it (circuits pickled both ways, Qiskit's threads on all cores), and with
    # qsflow's QPY transport on both sides (tasks.circuit_transport) and its Qiskit thread rule
    # (tasks.qiskit_threads), which isolates what the engine itself costs.
    from tasks import circuit_transport
    fan_outs, raw_fan_outs, raw_qpy_fan_outs = [], [], []
    for _ in range(1 + arguments.get("fan_rounds", 4)):
        start = time.perf_counter()
        parallel = get([transpile_remote(c, 7) for c in batch])
        fan_outs.append(time.perf_counter() - start)
        start = time.perf_counter()
        raw_qpy_parallel = ray.get([raw_transpile_qpy.remote(c, 7) for c in batch])
        raw_qpy_fan_outs.append(time.perf_counter() - start)
        circuit_transport.reset()  # the program's side pickles too (the next distributed call registers again)
        start = time.perf_counter()
        raw_parallel = ray.get([raw_transpile.remote(c, 7) for c in batch])
        raw_fan_outs.append(time.perf_counter() - start)
    manager = pass_manager(7)
    manager.run(batch[0])  # warm, as the workers are
    serials = []
    for _ in range(2):
        start = time.perf_counter()
        serial = [manager.run(c) for c in batch]
        serials.append(time.perf_counter() - start)
    in_process = statistics.median(serials)
    rayon = {"program": os.environ.get("RAYON_NUM_THREADS"), "workers": ray.get(worker_rayon.remote())}

    cache = None
    if arguments.get("cache"):
        count = arguments["cache_circuits"]
        recompute, cached = [], []
        for _ in range(2):  # the same call twice without cache, then twice with: the second one is a hit
            start = time.perf_counter()
            uncached_value = get(transpile_batch(count, 11))
            recompute.append(time.perf_counter() - start)
        for _ in range(3):  # the first computes and stores; the later ones are hits (best of two: a hit may
            start = time.perf_counter()  # land on a worker that has not yet loaded this task)
            cached_value = get(transpile_batch_cached(count, 11))
            cached.append(time.perf_counter() - start)
        cache = {"recompute_s": recompute, "cached_s": cached, "same": cached_value == uncached_value}
    save_result({"first_batch_s": first_batch, "first_batch_from_start_s": from_start,
                 "raw_ms": raw["median_ms"], "direct_ms": direct["median_ms"], "default_ms": default["median_ms"],
                 "default_submit_ms": default["submit_ms"],
                 "engine_alone": alone,
                 "rounds_ms": {"raw": raw["rounds_ms"], "direct": direct["rounds_ms"], "default": default["rounds_ms"]},
                 "server_cpu_ms": {"raw": raw["server_cpu_ms"], "direct": direct["server_cpu_ms"],
                                   "default": default["server_cpu_ms"]},
                 "fan_out_s": fan_outs, "raw_fan_out_s": raw_fan_outs, "raw_qpy_fan_out_s": raw_qpy_fan_outs,
                 "serial_s": in_process, "fan_out_warm_s": statistics.median(fan_outs[1:]),
                 "raw_fan_out_warm_s": statistics.median(raw_fan_outs[1:]),
                 "raw_qpy_fan_out_warm_s": statistics.median(raw_qpy_fan_outs[1:]),
                 "serial_rounds_s": serials, "rayon_num_threads": rayon,
                 "same": parallel == serial == raw_parallel == raw_qpy_parallel, "cache": cache,
                 "cpus": ray.cluster_resources().get("CPU", 0)})
''')


def _best_per_task(run: Callable[[], Any], tasks: int, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times) / tasks


def bench_local(tasks: int) -> None:
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
    print(f"  direct engine with recording on      {recorded * 1e3:7.2f} ms  {recorded / raw:4.1f}x")


def _all_task_runs(api: Any, job_id: str) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list = []
    while True:  # the API pages at 200
        page = api.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[job_id])),
                                  limit=200, offset=len(runs))
        runs += page
        if len(page) < 200:
            return runs


SERIAL_PROGRAM = textwrap.dedent('''
    import json, os, statistics, sys, time
    from qiskit.circuit.random import random_circuit
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_ibm_runtime.fake_provider import FakeSherbrooke
    batch = [random_circuit(12, 40, max_operands=2, measure=True, seed=s) for s in range(int(sys.argv[1]))]
    manager = generate_preset_pass_manager(optimization_level=2, backend=FakeSherbrooke(), seed_transpiler=7)
    manager.run(batch[0])
    rounds = {"threads": [], "one_thread": []}
    for _ in range(int(sys.argv[2])):
        for kind in rounds:
            if kind == "one_thread":
                os.environ["QISKIT_IN_PARALLEL"] = "TRUE"  # Qiskit's Rust passes run single-threaded
            else:
                os.environ.pop("QISKIT_IN_PARALLEL", None)
            start = time.perf_counter()
            [manager.run(c) for c in batch]
            rounds[kind].append(time.perf_counter() - start)
    print(json.dumps({kind: statistics.median(times) for kind, times in rounds.items()}))
''')


def serial_both_ways(circuits: int, rounds: int = 3) -> dict[str, float]:
    """The serial transpile of the same circuits in a fresh process, rounds alternating between Qiskit's default
    (its Rust passes on every core) and one thread (``QISKIT_IN_PARALLEL=TRUE``, as in a ``cpu=1`` task): the
    medians, ``{"threads": s, "one_thread": s}``. Their ratio bounds any fan-out on ``n`` CPUs:
    ``n * threads / one_thread`` over the serial transpile at best."""
    import json
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("QISKIT_IN_PARALLEL", "RAYON_NUM_THREADS")}
    output = subprocess.run([sys.executable, "-c", SERIAL_PROGRAM, str(circuits), str(rounds)], check=True,
                            capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def run_job(client: Any, tasks: int, circuits: int, first: int = 50, reps: int = 3, cache: bool = True,
            cache_circuits: int = 6, fan_rounds: int = 4) -> dict[str, Any]:
    """The default engine against raw Ray, the direct engine and serial work, in one fresh job on the warm head;
    returns the program's figures plus ``run_s`` (run() to result) and ``recorded`` task-run counts."""
    from deployments import server
    from deployments.connection import prefect_api
    from serverless_compat import QiskitFunction

    with tempfile.TemporaryDirectory() as program_dir:
        Path(program_dir, "bench_program.py").write_text(JOB_PROGRAM)
        function = client.upload(QiskitFunction(title="bench-distribute", entrypoint="bench_program.py",
                                                working_dir=program_dir))
    start = time.perf_counter()
    job = function.run(tasks=tasks, first=first, reps=reps, circuits=circuits, cache=cache, fan_rounds=fan_rounds,
                       cache_circuits=cache_circuits, server_pid=server.status()["server_pid"])
    result = job.result(cadence=0.5)
    result["run_s"] = time.perf_counter() - start
    expected = {"prefect-ray": first + (1 + reps) * tasks + (1 + fan_rounds) * circuits + (5 if cache else 0)
                + result["engine_alone"]["runs"],
                "direct": (1 + reps) * tasks}
    with prefect_api(client.host) as api:
        deadline = time.monotonic() + 180
        while True:
            runs = [r for r in _all_task_runs(api, job.job_id) if r.state_type and r.state_type.value == "COMPLETED"]
            counts = {"prefect-ray": sum("engine:prefect-ray" in r.tags for r in runs)}
            counts["direct"] = len(runs) - counts["prefect-ray"]
            if counts == expected or time.monotonic() > deadline:
                break
            time.sleep(1)
    result["recorded"], result["expected"] = counts, expected
    result["cached_runs"] = sum(1 for r in runs if r.state_name == "Cached")
    return result


def bench_job(client: Any, tasks: int, circuits: int, first: int = 50, reps: int = 3) -> None:
    result = run_job(client, tasks, circuits, first, reps)
    counts, expected = result["recorded"], result["expected"]
    raw, cpu = result["raw_ms"], result["server_cpu_ms"]
    print(f"fresh job (run() -> DONE {result['run_s']:.1f} s), inside its program:")
    print(f"  first batch of {first} tasks (default engine): {result['first_batch_s']:.2f} s from the first call, "
          f"{result['first_batch_from_start_s']:.2f} s from the program's start")
    rounds = result["rounds_ms"]
    print(f"  {tasks} trivial tasks in flight, warm, median of {len(rounds['default'])} rounds after a warm-up round "
          f"(raw: {len(rounds['raw'])}) (per task; Prefect server CPU per task):")
    print(f"    raw ray.remote                      {raw:7.2f} ms   1.0x   server {cpu['raw']:5.2f} ms   "
          f"rounds {_rounded(rounds['raw'])}")
    print(f"    distribute_task, default engine     {result['default_ms']:7.2f} ms {result['default_ms'] / raw:6.1f}x"
          f"   server {cpu['default']:5.2f} ms   (submitting: {result['default_submit_ms']:.2f} ms)   "
          f"rounds {_rounded(rounds['default'])}")
    print(f"    distribute_task, direct engine      {result['direct_ms']:7.2f} ms {result['direct_ms'] / raw:6.1f}x"
          f"   server {cpu['direct']:5.2f} ms   rounds {_rounded(rounds['direct'])}")
    alone = result["engine_alone"]
    print(f"    Prefect's task engine alone         {alone['cpu_ms']:7.2f} ms {alone['cpu_ms'] / raw:6.1f}x   CPU per task "
          f"(wall {alone['wall_ms']:.2f} ms): in the program's process, one after another, no Ray, no server CPU")
    cold, warm = result["fan_out_s"][0], result["fan_out_warm_s"]
    raw_cold, raw_warm = result["raw_fan_out_s"][0], result["raw_fan_out_warm_s"]
    serial = result["serial_s"]
    print(f"  {circuits}-circuit transpile (FakeSherbrooke, level 2) on {result['cpus']:g} CPUs "
          f"(RAYON_NUM_THREADS program/workers: {result['rayon_num_threads']}), warm = median of "
          f"{len(result['fan_out_s']) - 1} rounds after a first one:")
    print(f"    serial in the program (warm)        {serial:6.2f} s")
    print(f"    raw ray.remote fan-out              {raw_warm:6.2f} s  ({serial / raw_warm:.2f}x serial; first "
          f"{raw_cold:.1f} s; circuits pickled, as plain Ray does)")
    raw_qpy = result["raw_qpy_fan_out_warm_s"]
    print(f"    raw ray.remote fan-out, QPY         {raw_qpy:6.2f} s  ({serial / raw_qpy:.2f}x serial; with qsflow's "
          f"circuit transport on both sides and its Qiskit thread rule)")
    print(f"    distribute_task fan-out             {warm:6.2f} s  ({serial / warm:.2f}x serial, {warm / raw_warm:.2f}x "
          f"raw, {warm / raw_qpy:.2f}x raw with QPY; first {cold:.1f} s); same circuits: {result['same']}")
    if result.get("cache"):
        cache = result["cache"]
        hit = min(cache["cached_s"][1:])
        print(f"  cache=True: recompute {min(cache['recompute_s']):.2f} s, cached {hit:.3f} s "
              f"({min(cache['recompute_s']) / hit:.0f}x); same value: {cache['same']}")
    print(f"  completed task runs recorded: default engine {counts['prefect-ray']} of {expected['prefect-ray']}, "
          f"direct {counts['direct']} of {expected['direct']}")


def _rounded(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


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
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--circuits", type=int, default=32)
    parser.add_argument("--no-job", action="store_true", help="skip the in-job numbers (no Prefect server)")
    parser.add_argument("--stock", action="store_true", help="also time prefect-ray's RayTaskRunner")
    args = parser.parse_args()

    own_home = not os.environ.get("QSFLOW_HOME")
    if own_home:
        os.environ["QSFLOW_HOME"] = tempfile.mkdtemp(prefix="qsflow-bench-")
    from deployments import ray_cluster, server

    try:
        bench_local(args.tasks)
        if not args.no_job or args.stock:
            from serverless_compat import ServerlessClient

            start = time.perf_counter()
            client = ServerlessClient()
            print(f"embedded Prefect server ready in {time.perf_counter() - start:.1f} s")
            if not args.no_job:
                bench_job(client, args.tasks, args.circuits)
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
