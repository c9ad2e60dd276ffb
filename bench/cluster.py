"""100 trivial jobs to DONE: the embedded default (SQLite, one worker) against the local cluster (PostgreSQL, two
workers), same machine, same run.

    python bench/cluster.py [--jobs 100] [--concurrency 8] [--warmup 4] [--out bench/cluster.json]

Each side gets the same program and the same number of jobs at once, and the ``qsflow`` work pool the same
concurrency limit (``--concurrency``; the cluster's two workers take half each, ``qsflow worker --limit``), so what
differs is the database and the number of workers. Both sides run qsflow's warm worker (the embedded default's, and
``qsflow worker`` on the cluster); ``QSFLOW_WARM_WORKER=0`` makes both Prefect's stock one (like for like too).
Per job, queue-to-DONE is the flow run's creation to its Completed state, both as Prefect's server recorded them;
throughput is DONE jobs per second from the first submission to the last job's end. Jobs that do not end DONE
are counted and listed with their state's message, not timed. Prints the figures and writes them with the
machine's load to JSON. ``python -m bench --cluster`` calls :func:`run` with its embedded client.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = "from qiskit_serverless import get_arguments, save_result\nsave_result(get_arguments())\n"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run_jobs(client: Any, source: Path, count: int, concurrency: int, timeout: float = 3600) -> dict[str, Any]:
    """Submit ``count`` jobs of the trivial program at once through ``client``; wait for all; their timings."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.objects import StateType

    from deployments.connection import prefect_api
    from deployments.settings import WORK_POOL
    from serverless_compat import QiskitFunction

    fn = client.upload(QiskitFunction(title="bench-cluster-trivial", entrypoint="trivial.py",
                                      working_dir=str(source)))
    with prefect_api(client.host) as api:
        pool = api.read_work_pool(WORK_POOL)
        previous_limit = pool.concurrency_limit
        _set_pool_limit(api, concurrency)
        try:
            started = time.time()
            ids = [fn.run(i=i).job_id for i in range(count)]
            submitted = time.time()
            deadline = time.monotonic() + timeout
            while True:
                runs = api.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=count)
                if len(runs) == count and all(r.state and r.state.is_final() for r in runs):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{sum(bool(r.state and r.state.is_final()) for r in runs)} of {count} "
                                       f"jobs finished within {timeout:.0f} s")
                time.sleep(1)
        finally:
            _set_pool_limit(api, previous_limit)
    done = [r for r in runs if r.state.type == StateType.COMPLETED]
    # Not DONE is a finding, not a crash of the benchmark: kept with Prefect's state and message.
    failed = [{"job": str(r.id), "state": r.state.name, "message": (r.state.message or "")[:500]}
              for r in runs if r.state.type != StateType.COMPLETED]
    if not done:
        raise RuntimeError(f"None of the {count} jobs ended DONE, e.g. {failed[:2]}")
    latencies = [r.state.timestamp.timestamp() - r.created.timestamp() for r in done]
    span = max(r.state.timestamp.timestamp() for r in runs) - started
    return {"jobs": count, "done": len(done), "not_done": failed, "concurrency": concurrency,
            "submit_s": submitted - started, "span_s": span,
            "throughput_jobs_per_s": len(done) / span, "queue_to_done_p50_s": statistics.median(latencies),
            "queue_to_done_p95_s": _percentile(latencies, 0.95), "queue_to_done_s": latencies}


def _set_pool_limit(api: Any, limit: Optional[int]) -> None:
    from prefect.client.schemas.actions import WorkPoolUpdate

    from deployments.settings import WORK_POOL

    api.update_work_pool(WORK_POOL, WorkPoolUpdate(concurrency_limit=limit))


def _figure(name: str, value: float, unit: str, baseline: float, baseline_name: str, **extra: Any) -> dict:
    """A figure in ``python -m bench``'s shape (no goal: the issue asks for the comparison, not a threshold)."""
    return {"figure": name, "value": value, "unit": unit, "baseline": baseline, "baseline_name": baseline_name,
            "ratio": value / baseline if baseline else None, "goal": "report", "met": None, **extra}


def run(client: Any = None, jobs: int = 100, concurrency: int = 8, warmup: int = 4) -> dict[str, Any]:
    """Both sides in this process, the embedded one first (``client``: an embedded-default client to reuse; else
    one is started in this process's qsflow home), then the local cluster, started and stopped here. Each side
    first runs ``warmup`` jobs, not counted, so neither pays its first imports in the figures."""
    from deployments import local_cluster
    from serverless_compat import ServerlessClient

    with tempfile.TemporaryDirectory(prefix="qsflow-bench-cluster-") as directory:
        source = Path(directory)
        (source / "trivial.py").write_text(PROGRAM)
        embedded_client = client or ServerlessClient()
        load_before = os.getloadavg()
        if warmup:
            run_jobs(embedded_client, source, warmup, concurrency)
        embedded = run_jobs(embedded_client, source, jobs, concurrency)
        started = time.perf_counter()
        report = local_cluster.up(workers=2, worker_limit=max(1, concurrency // 2))
        cluster_start_s = time.perf_counter() - started
        try:
            cluster_client = ServerlessClient(host=report["api_url"])
            if warmup:
                run_jobs(cluster_client, source, warmup, concurrency)
            cluster = run_jobs(cluster_client, source, jobs, concurrency)
        finally:
            local_cluster.down()
    ratio = cluster["throughput_jobs_per_s"] / embedded["throughput_jobs_per_s"]
    figures = [
        _figure(f"cluster throughput, {jobs} trivial jobs (PostgreSQL, 2 workers)", cluster["throughput_jobs_per_s"],
                "jobs/s", embedded["throughput_jobs_per_s"], "embedded default (SQLite, 1 worker)"),
        _figure("cluster queue-to-DONE p50", cluster["queue_to_done_p50_s"], "s",
                embedded["queue_to_done_p50_s"], "embedded default p50"),
        _figure("cluster queue-to-DONE p95", cluster["queue_to_done_p95_s"], "s",
                embedded["queue_to_done_p95_s"], "embedded default p95"),
    ]
    return {"figures": figures, "throughput_ratio_cluster_over_embedded": ratio, "warmup_jobs": warmup,
            "embedded": embedded,
            "cluster": cluster, "cluster_start_s": cluster_start_s,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at once on each side (work-pool limit)")
    parser.add_argument("--warmup", type=int, default=4, help="jobs run first on each side, not counted")
    parser.add_argument("--out", default=str(ROOT / "bench" / "cluster.json"))
    args = parser.parse_args(argv)
    own_home = not os.environ.get("QSFLOW_HOME")
    if own_home:
        os.environ["QSFLOW_HOME"] = tempfile.mkdtemp(prefix="qsflow-bench-")
    sys.path.insert(0, str(ROOT))
    from deployments import ray_cluster, server

    try:
        result = run(jobs=args.jobs, concurrency=args.concurrency, warmup=args.warmup)
    finally:
        if own_home:
            server.stop()
            ray_cluster.stop()
            shutil.rmtree(os.environ["QSFLOW_HOME"], ignore_errors=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    embedded, cluster = result["embedded"], result["cluster"]
    print(f"{args.jobs} trivial jobs, {args.concurrency} at once; {result['cpus']} CPUs, load average "
          f"{result['load_average_before']} before, {result['load_average_after']} after (shared machine: noisy)")
    print(f"{'':34}{'embedded (SQLite, 1 worker)':>30}{'cluster (PostgreSQL, 2 workers)':>34}")
    print(f"{'throughput':34}{embedded['throughput_jobs_per_s']:>24.3f} job/s{cluster['throughput_jobs_per_s']:>28.3f} job/s")
    for key, label in (("queue_to_done_p50_s", "queue-to-DONE p50"), ("queue_to_done_p95_s", "queue-to-DONE p95")):
        print(f"{label:34}{embedded[key]:>28.1f} s{cluster[key]:>32.1f} s")
    for side, figures in (("embedded", embedded), ("cluster", cluster)):
        if figures["not_done"]:
            print(f"{side}: {len(figures['not_done'])} of {figures['jobs']} jobs did not end DONE: "
                  + "; ".join(f"{f['state']}: {f['message'][:160]}" for f in figures["not_done"][:3]))
    print(f"throughput ratio cluster / embedded: {result['throughput_ratio_cluster_over_embedded']:.2f}x "
          f"(cluster start {result['cluster_start_s']:.0f} s, not counted); JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
