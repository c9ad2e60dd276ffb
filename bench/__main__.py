"""Every figure of the performance issue, each against its baseline measured in the same run.

    python -m bench [--out bench/results.json] [--only latency,distribute,status,jobs] [--runs 5]
                    [--tasks 200] [--circuits 32] [--jobs 20] [--cluster]

One fresh qsflow home (its own embedded Prefect server, worker and local Ray head, all stopped at the end, unless
QSFLOW_HOME is set), measured once warm: the Ray head up and its pool of warm workers full (:func:`settle`).
Prints a table (figure, result, baseline, ratio, goal) and writes every absolute number, the ratios and the machine
to the JSON file. Wall times are as noisy as the machine; CPU times (from /proc) are given
where a figure has one. ``--cluster`` also runs ``bench/cluster.py`` (its ``run(client) -> dict``) if present.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("latency", "distribute", "status", "jobs")


def _figure(name: str, value: float, unit: str, baseline: Optional[float], baseline_name: str, goal: str,
            met: Optional[bool], ratio: Optional[float] = None, **extra: Any) -> dict[str, Any]:
    if ratio is None and baseline:
        ratio = value / baseline
    return {"figure": name, "value": value, "unit": unit, "baseline": baseline, "baseline_name": baseline_name,
            "ratio": ratio, "goal": goal, "met": met, **extra}


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average_1_5_15": [round(x, 2) for x in load], "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def run_latency(client: Any, work: Path, runs: int) -> tuple[list, dict]:
    from bench import job_latency

    result = job_latency.measure(client, job_latency.write_program(work / "trivial"), runs)
    p50, base = result["warm_p50_s"], result["plain_p50_s"]
    figure = _figure("run() -> DONE, trivial program, warm (p50)", p50, "s", base, "plain `python program.py` p50",
                     "<= 1.0 s and <= 3x", p50 <= 1.0 and p50 / base <= 3,
                     end_recorded_by_server_p50_s=result["warm_end_at_server_p50_s"],
                     back_to_back_p50_s=result["warm_back_to_back_p50_s"],
                     cpu_per_job_s=result["cpu_per_job_s"])
    # not a goal: a job is a Prefect flow run, so its time cannot go below a bare one's (bench/job_latency.py)
    floor = _figure("  its floor: a bare Prefect flow run, warm process (p50)", result["bare_flow_p50_s"], "s", base,
                    "plain `python program.py` p50 (a trivial @flow, no deployment, worker or program)",
                    "- (information)", None)
    return [figure, floor], result


def run_distribute(client: Any, tasks: int, circuits: int) -> tuple[list, dict]:
    from bench import distribute

    result = distribute.run_job(client, tasks, circuits)
    result["serial_fresh_process_s"] = distribute.serial_both_ways(circuits)
    raw, default = result["raw_ms"], result["default_ms"]
    fan_out, raw_fan_out = result["fan_out_warm_s"], result["raw_fan_out_warm_s"]  # medians of warm rounds
    raw_qpy_fan_out = result["raw_qpy_fan_out_warm_s"]
    serial = result["serial_s"]
    fresh = result["serial_fresh_process_s"]  # both serial ways, alternated in one process
    serial_1 = fresh["one_thread"]
    cpu, cpus = result["server_cpu_ms"], result["cpus"]
    figures = [
        _figure(f"per-task overhead, {tasks} trivial tasks, warm (default engine)", default, "ms", raw,
                "raw ray.remote", "<= 5x", default / raw <= 5, server_cpu_ms_per_task=cpu["default"],
                raw_server_cpu_ms_per_task=cpu["raw"], direct_engine_ms=result["direct_ms"],
                direct_server_cpu_ms_per_task=cpu["direct"]),
        # not a goal: what the default engine's per-task figure cannot go below (bench/distribute.py)
        _figure("  its floor: Prefect's task engine alone, CPU per task", result["engine_alone"]["cpu_ms"], "ms",
                raw, "raw ray.remote (engine in one process, no Ray, no server CPU)", "- (information)", None,
                wall_ms=result["engine_alone"]["wall_ms"]),
        _figure("first batch of 50 tasks in a fresh job", result["first_batch_s"], "s", raw * 50 / 1e3,
                "raw Ray warm, 50 tasks", "<= 2 s", result["first_batch_s"] <= 2.0,
                from_program_start_s=result["first_batch_from_start_s"]),
        _figure(f"{circuits}-circuit transpile fan-out (speed-up over serial)", serial / fan_out, "x", None,
                f"serial in-process {serial:.2f} s (Qiskit's own threads)", ">= 1.8x", serial / fan_out >= 1.8,
                ratio=serial / fan_out, fan_out_s=fan_out, serial_s=serial, first_round_s=result["fan_out_s"][0]),
        # not a goal: no schedule on these CPUs beats the serial single-threaded transpile spread over all of them
        _figure("  its ceiling: CPUs x serial / serial with one thread", cpus * fresh["threads"] / serial_1, "x",
                None, f"{cpus:g} CPUs; serial {fresh['threads']:.2f} s, one thread {serial_1:.2f} s (one process, "
                "alternated)", "- (information)", None, ratio=cpus * fresh["threads"] / serial_1),
        _figure(f"{circuits}-circuit fan-out vs serial with one thread", serial_1 / fan_out, "x", None,
                f"serial, one thread {serial_1:.2f} s", ">= 1.8x (for clarity)", serial_1 / fan_out >= 1.8,
                ratio=serial_1 / fan_out, serial_single_thread_s=serial_1),
        _figure(f"{circuits}-circuit fan-out vs raw ray.remote fan-out", fan_out, "s", raw_fan_out,
                "raw ray.remote fan-out (circuits pickled)", "<= 1.1x", fan_out / raw_fan_out <= 1.1),
        _figure(f"{circuits}-circuit fan-out vs raw ray.remote, both QPY", fan_out, "s", raw_qpy_fan_out,
                "raw ray.remote fan-out, qsflow's QPY transport and thread rule", "<= 1.1x (the engine alone)",
                fan_out / raw_qpy_fan_out <= 1.1),
    ]
    cache = result.get("cache")
    if cache:
        recompute, cached = min(cache["recompute_s"]), min(cache["cached_s"][1:])
        figures.append(_figure("repeated identical task, cache=True", cached, "s", recompute,
                               "recompute (same task, no cache)", ">= 20x faster", recompute / cached >= 20,
                               ratio=recompute / cached, same_value=cache["same"]))
    return figures, result


def run_status(client: Any) -> tuple[list, dict]:
    from bench import jobs

    result = jobs.update_status_round_trip(client)
    p50, bare = result["update_status_p50_s"], result["bare_call_p50_s"]
    return [_figure("update_status round trip (p50)", p50 * 1e3, "ms", bare * 1e3, "a bare Prefect API call p50",
                    "<= 20 ms", p50 * 1e3 <= 20)], result


def run_jobs(client: Any, work: Path, count: int) -> tuple[list, dict]:
    from bench import jobs, job_latency

    result = jobs.concurrent_jobs(client, job_latency.write_program(work / "trivial"), count)
    speedup = result["sequential_s"] / result["concurrent_s"]
    return [_figure(f"{count} concurrent trivial jobs to DONE (throughput)", speedup, "x", None,
                    f"{count} sequential: {result['sequential_s']:.1f} s", ">= 1.5x", speedup >= 1.5, ratio=speedup,
                    concurrent_s=result["concurrent_s"], sequential_s=result["sequential_s"])], result


def run_cluster(client: Any) -> tuple[list, dict]:
    """bench/cluster.py's figures (issue 13), when that module exists."""
    path = ROOT / "bench" / "cluster.py"
    if not path.exists():
        return [], {"skipped": "bench/cluster.py not present"}
    spec = importlib.util.spec_from_file_location("bench.cluster", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    result = module.run(client)
    return list(result.get("figures", [])), result


def settle(timeout: float = 180.0) -> float:
    """Wait until the embedded default is warm: its local Ray head up and its pool of warm Ray workers full (they
    start in the background after the server; until then each start takes ~1.5 s of CPU from whatever is measured).
    Returns the seconds waited."""
    from deployments import ray_cluster, ray_warm_workers

    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while not ray_cluster.local_head_status().get("running"):
        if time.monotonic() > deadline:
            return time.perf_counter() - started
        time.sleep(0.5)
    ray_warm_workers.fill()  # blocks while the missing workers start (one filler at a time per home)
    return time.perf_counter() - started


def _show(figure: dict[str, Any]) -> str:
    value, unit = figure["value"], figure["unit"]
    text = f"{value:.2f} {unit}" if unit != "x" else f"{value:.2f}x"
    baseline = f"{figure['baseline']:.2f} {unit}  " if figure["baseline"] is not None else ""
    ratio = f"{figure['ratio']:.2f}x" if figure["ratio"] is not None else "-"
    met = {True: "yes", False: "NO", None: "-"}[figure["met"]]
    line = (f"{figure['figure'][:58]:58} {text:>11}  {ratio:>8}  {met:>4}  goal {figure['goal']}; "
            f"baseline: {baseline}{figure['baseline_name']}")
    if "back_to_back_p50_s" in figure:  # the same jobs one after another, each meeting the end of the one before
        line += f"\n{'  the same, back to back (p50)':58} {figure['back_to_back_p50_s']:>9.2f} s"
    return line


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--runs", type=int, default=5, help="warm jobs for run() -> DONE")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--circuits", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--cluster", action="store_true", help="also run bench/cluster.py (issue 13) if present")
    args = parser.parse_args(argv)
    sections = [s for s in args.only.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")

    own_home = not os.environ.get("QSFLOW_HOME")
    if own_home:
        os.environ["QSFLOW_HOME"] = tempfile.mkdtemp(prefix="qsflow-bench-")
    sys.path.insert(0, str(ROOT))
    from deployments import ray_cluster, server
    from serverless_compat import ServerlessClient

    report: dict[str, Any] = {"machine": machine(), "figures": [], "raw": {}}
    work = Path(tempfile.mkdtemp(prefix="qsflow-bench-src-"))
    try:
        start = time.perf_counter()
        client = ServerlessClient()
        report["raw"]["embedded_server_start_s"] = time.perf_counter() - start
        report["raw"]["settled_s"] = settle()
        steps = {"latency": lambda: run_latency(client, work, args.runs),
                 "distribute": lambda: run_distribute(client, args.tasks, args.circuits),
                 "status": lambda: run_status(client),
                 "jobs": lambda: run_jobs(client, work, args.jobs)}
        chosen = [(name, steps[name]) for name in sections]
        if args.cluster:
            chosen.append(("cluster", lambda: run_cluster(client)))
        for name, step in chosen:
            started = time.perf_counter()
            print(f"[bench] {name} ...", flush=True)
            figures, raw = step()
            report["figures"] += figures
            report["raw"][name] = raw
            report["raw"][f"{name}_section_s"] = time.perf_counter() - started
    finally:
        report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
        if own_home:
            server.stop()
            ray_cluster.stop()
            shutil.rmtree(os.environ["QSFLOW_HOME"], ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    m = report["machine"]
    print(f"\nmachine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}; load average at start "
          f"{m['load_average_1_5_15']}, at end {m['load_average_at_end']} (wall times are noisy under load)")
    print(f"{'figure':58} {'result':>11}  {'ratio':>8}  {'met':>4}")
    for figure in report["figures"]:
        print(_show(figure))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
