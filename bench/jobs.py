"""Job-level figures: ``update_status`` round trip against a bare Prefect API call, and 20 trivial jobs run
concurrently against the same 20 run one after another (``python -m bench`` runs them)."""

from __future__ import annotations

import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

STATUS_PROGRAM = textwrap.dedent('''
    import os, statistics, time
    import httpx
    from qiskit_serverless import get_arguments, save_result, update_status

    api = os.environ["PREFECT_API_URL"].rstrip("/")
    job_id = os.environ["QSFLOW_JOB_ID"]
    rounds = get_arguments()["rounds"]
    statuses = ["MAPPING", "OPTIMIZING_HARDWARE", "WAITING_QPU", "EXECUTING_QPU", "POST_PROCESSING"]
    update, bare = [], []
    http = httpx.Client(timeout=30)
    for i in range(rounds):
        start = time.perf_counter()
        http.get(f"{api}/flow_runs/{job_id}").raise_for_status()  # one plain API request, kept-alive client
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert update_status(statuses[i % len(statuses)])
        update.append(time.perf_counter() - start)
    save_result({"update_status_s": update, "bare_call_s": bare})
''')


def update_status_round_trip(client: Any, rounds: int = 30) -> dict[str, Any]:
    """p50 of ``update_status`` and of a bare Prefect API request (GET the job's flow run), from a job's program."""
    from serverless_compat import QiskitFunction

    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "status_program.py").write_text(STATUS_PROGRAM)
        function = client.upload(QiskitFunction(title="bench-status", entrypoint="status_program.py",
                                                working_dir=directory))
    result = function.run(rounds=rounds).result(cadence=0.5)
    update, bare = result["update_status_s"], result["bare_call_s"]
    return {"update_status_p50_s": statistics.median(update), "bare_call_p50_s": statistics.median(bare),
            "update_status_s": update, "bare_call_s": bare}


def concurrent_jobs(client: Any, source: Path, count: int = 20) -> dict[str, Any]:
    """``count`` trivial jobs run one after another, then ``count`` submitted at once; each set to all DONE."""
    from serverless_compat import QiskitFunction

    function = client.upload(QiskitFunction(title="trivial", entrypoint="trivial.py", working_dir=str(source)))

    def finish(jobs: list) -> None:
        for job in jobs:
            status = job.wait(timeout=900, poll=0.1)
            assert status == "DONE", (status, job.logs())

    start = time.perf_counter()
    for index in range(count):
        finish([function.run(index=index)])
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    finish([function.run(index=index) for index in range(count)])
    concurrent = time.perf_counter() - start
    return {"jobs": count, "sequential_s": sequential, "concurrent_s": concurrent}
