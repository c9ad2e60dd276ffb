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

# Information, not a baseline: the smallest Prefect flow run on the same server. A trivial ``@flow`` called in a
# process that already imported Prefect and ran it three times: the run's creation, its Running and Completed
# states and its two log lines, with no deployment, worker, process start or program. A job is such a flow run
# plus all of those, so its time cannot go below this one's.
BARE_FLOW = """
import sys, time
from deployments.warm_worker import _heartbeats_without_join
from prefect import flow
_heartbeats_without_join()  # as in the worker's runs: no wait for the heartbeat thread's 1 s sleep at the end
@flow(persist_result=False)
def trivial():
    return 1
for _ in range(3):
    trivial()
print("ready", flush=True)
for _ in sys.stdin:
    started = time.perf_counter()
    trivial()
    print(time.perf_counter() - started, flush=True)
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


class BareFlow:
    """A warm process that runs :data:`BARE_FLOW`'s trivial flow against ``url`` once per :meth:`time` call."""

    def __init__(self, url: str) -> None:
        from deployments import server

        env = {**os.environ, **server.prefect_env(url), "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen([sys.executable, "-c", BARE_FLOW], env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if self.process.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError(f"the bare-flow process ended early (exit code {self.process.returncode})")

    def time(self) -> float:
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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
      the baseline and with a bare Prefect flow run (``bare_flow_s``, :data:`BARE_FLOW`), ``PAUSE_S`` before each
      run of any of them: all are measured in the same conditions.
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
    warm, baseline, bare, ended = [], [], [], []
    bare_flow = BareFlow(client.host)
    try:
        for index in range(runs):
            time.sleep(PAUSE_S)
            baseline += plain_subprocess(source, 1)
            time.sleep(PAUSE_S)
            bare.append(bare_flow.time())
            time.sleep(PAUSE_S)
            took, job_id, started_epoch = one_job(runs + 1 + index)
            warm.append(took)
            ended.append((job_id, started_epoch))
    finally:
        bare_flow.close()
    # when the server recorded each warm job's end, from run(): the same without the client's poll interval
    from uuid import UUID

    from deployments.connection import prefect_api

    with prefect_api(client.host) as api:
        at_server = [api.read_flow_run(UUID(job_id)).end_time.timestamp() - epoch for job_id, epoch in ended]
    return {"first_s": first, "warm_s": warm, "warm_p50_s": statistics.median(warm),
            "warm_end_at_server_p50_s": statistics.median(at_server),
            "warm_back_to_back_s": back_to_back, "warm_back_to_back_p50_s": statistics.median(back_to_back),
            "plain_s": baseline, "plain_p50_s": statistics.median(baseline), "pause_s": PAUSE_S,
            "bare_flow_s": bare, "bare_flow_p50_s": statistics.median(bare),
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
    bare = result["bare_flow_p50_s"]
    print(f"a bare Prefect flow run, p50:        {bare:7.2f} s  ({bare / base:.2f}x plain; a trivial @flow called in "
          f"a warm process: what a job cannot go below)")
    print(f"server + worker CPU per warm job:    {result['server_and_worker_cpu_per_job_s']:7.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
