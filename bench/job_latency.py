"""run() -> DONE for a trivial program on the embedded default, against a plain subprocess.

    python -m bench.job_latency [--runs 5]

Uses a fresh qsflow home (its own embedded server, stopped at the end). Prints the cold figures
(server start, first job) and the warm run() -> DONE times with their ratio to running the same
program with `python program.py`, the two alternating in the same run, each from a quiet machine; and the
warm jobs run back to back. ``python -m bench`` runs the same measurement (:func:`measure`) with every other
figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# How often the client would read the job's status if the server's event stream could not be opened (job.wait is
# woken by the stream: deployments.job_end); each read costs the client and the server CPU too.
POLL_S = 0.1
# Quiet time before each run of the paired warm figure: the server's and worker's work after a job's end (its final
# hook's artifacts and events, recorded by the server: ~0.1 s) is over by then.
PAUSE_S = 1.0

PROGRAM = """from qiskit_serverless import get_arguments, save_result
save_result({"echo": get_arguments()})
"""


def plain_subprocess(source: Path, runs: int) -> list[float]:
    """Wall times of ``python trivial.py`` (the shim importable, as in a job)."""
    alias = ROOT / "serverless_compat" / "_alias"
    env = {**os.environ, "PYTHONPATH": f"{alias}{os.pathsep}{ROOT}"}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "trivial.py"], cwd=source, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def write_program(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "trivial.py").write_text(PROGRAM)
    return directory


def measure(client: Any, source: Path, runs: int) -> dict[str, Any]:
    """Cold first job, then ``runs`` warm jobs two ways, each to DONE:

    * one after another (``warm_back_to_back_s``), with the CPU the embedded server and worker (with the flow-run
      processes they reaped) spent per job: each job also meets the end of the one before (its final hook's
      artifacts and events, the server recording them);
    * each from a quiet machine (``warm_s``, the figure), alternating with the plain ``python trivial.py`` runs of
      the baseline, ``PAUSE_S`` before each run of either: both are measured in the same conditions.
    """
    from bench.proc_cpu import tree_cpu
    from deployments import server
    from serverless_compat import QiskitFunction

    function = client.upload(QiskitFunction(title="trivial", entrypoint="trivial.py", working_dir=str(source)))
    state = server.status()

    def cpu() -> tuple[float, float, float]:
        return (tree_cpu([state.get("server_pid")]), tree_cpu([state.get("worker_pid")]), time.process_time())

    def one_job(index: int) -> tuple[float, str, float]:
        started, started_epoch = time.perf_counter(), time.time()
        job = function.run(index=index)
        status = job.wait(timeout=300, poll=POLL_S)
        assert status == "DONE", job.logs()
        return time.perf_counter() - started, job.job_id, started_epoch

    first = one_job(0)[0]
    before = cpu()
    back_to_back = [one_job(index)[0] for index in range(1, runs + 1)]
    used = [(after - earlier) / runs for after, earlier in zip(cpu(), before)]
    warm, baseline, ended = [], [], []
    for index in range(runs):
        time.sleep(PAUSE_S)
        baseline += plain_subprocess(source, 1)
        time.sleep(PAUSE_S)
        took, job_id, started_epoch = one_job(runs + 1 + index)
        warm.append(took)
        ended.append((job_id, started_epoch))
    # when the server recorded each warm job's end, from run(): the same without the client's poll interval
    from uuid import UUID

    from deployments.connection import prefect_api

    with prefect_api(client.host) as api:
        at_server = [api.read_flow_run(UUID(job_id)).end_time.timestamp() - epoch for job_id, epoch in ended]
    return {"first_s": first, "warm_s": warm, "warm_p50_s": statistics.median(warm),
            "warm_end_at_server_p50_s": statistics.median(at_server),
            "warm_back_to_back_s": back_to_back, "warm_back_to_back_p50_s": statistics.median(back_to_back),
            "plain_s": baseline, "plain_p50_s": statistics.median(baseline), "pause_s": PAUSE_S,
            "server_and_worker_cpu_per_job_s": used[0] + used[1], "cpu_per_job_s": {
                "server": used[0], "worker_and_runs": used[1], "client": used[2]}, "client_poll_s": POLL_S}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qsflow-bench-") as tmp:
        os.environ["QSFLOW_HOME"] = str(Path(tmp) / "home")
        source = write_program(Path(tmp) / "src")
        from deployments import server
        from serverless_compat import ServerlessClient

        try:
            started = time.perf_counter()
            client = ServerlessClient()
            server_start = time.perf_counter() - started
            result = measure(client, source, args.runs)
        finally:
            server.stop()
    warm, p50, base = result["warm_s"], result["warm_p50_s"], result["plain_p50_s"]
    print(f"embedded server start (cold):        {server_start:7.2f} s")
    print(f"first job run() -> DONE (cold):      {result['first_s']:7.2f} s")
    print(f"warm run() -> DONE, p50 of {len(warm)}:       {p50:7.2f} s  (min {min(warm):.2f}, max {max(warm):.2f})")
    print(f"  the same, back to back, p50:       {result['warm_back_to_back_p50_s']:7.2f} s")
    print(f"plain `python program.py`, p50:      {base:7.2f} s")
    print(f"ratio warm job / plain subprocess:   {p50 / base:7.2f}x")
    print(f"server + worker CPU per warm job:    {result['server_and_worker_cpu_per_job_s']:7.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
