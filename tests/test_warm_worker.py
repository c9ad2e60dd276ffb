"""The embedded worker starts the runner flow's runs forked from its warm forkserver (deployments.warm_worker),
as Prefect flow runs with the usual states; tests/test_main_path.py covers the rest of a job's life on it
(statuses, failure, job.stop())."""

from __future__ import annotations

from conftest import PROGRAMS
from serverless_compat import QiskitFunction


def test_runner_runs_are_forked_from_the_warm_forkserver(client, prefect) -> None:
    from deployments import server

    function = client.upload(QiskitFunction(title="warm-worker", entrypoint="main.py",
                                            working_dir=str(PROGRAMS / "warm_worker")))
    first, second = function.run(), function.run()
    results = [first.result(cadence=0.5), second.result(cadence=0.5)]
    for result in results:
        # the runner process is a child of the forkserver that preloaded Prefect's engine and qsflow's runner
        assert "multiprocessing.forkserver" in result["runner_command"], result
        assert "deployments.warm_preload" in result["runner_command"], result
    assert results[0]["runner_pid"] != results[1]["runner_pid"]  # one process per run

    worker_pid = server.status()["worker_pid"]
    with open(f"/proc/{worker_pid}/cmdline", "rb") as handle:  # the embedded default's worker is `qsflow worker`
        assert b"deployments.cli\x00worker\x00--pool\x00qsflow\x00" in handle.read()

    # still Prefect flow runs with Prefect's states, as with the stock worker
    from uuid import UUID

    states = [s.type.value for s in prefect.read_flow_run_states(UUID(first.job_id))]
    assert states[0] == "SCHEDULED" and "PENDING" in states and states[-1] == "COMPLETED", states
    assert states.count("RUNNING") >= 3  # Running, then INITIALIZING and RUNNING (qsflow's names)


def test_a_scheduled_run_is_not_polled_for_while_this_workers_runs_fill_the_pools_limit() -> None:
    """Only the worker's own runs count: with other workers' runs on the pool it still polls (never one too few)."""
    from prefect.client.schemas.objects import WorkPool

    from deployments.warm_worker import WarmProcessWorker

    worker = WarmProcessWorker(work_pool_name="qsflow")
    assert not worker._pool_filled_here()  # the pool not read yet
    worker._work_pool = WorkPool(name="qsflow", type="process", concurrency_limit=2)
    worker._active_runs = 1
    assert not worker._pool_filled_here()
    worker._active_runs = 2
    assert worker._pool_filled_here()
    worker._work_pool = WorkPool(name="qsflow", type="process")  # no limit
    assert not worker._pool_filled_here()
