"""Faults: a job ends in the right state and nothing stays stuck, on the session's real Prefect server and Ray.

- a program or one of its distributed tasks raises -> the error reaches ``get()``; unhandled, the job is ERROR;
- the runner process is SIGKILLed -> ERROR (Prefect Crashed), one final status event, the program gone;
- a Ray worker dies mid-task -> Ray runs the task again (its default retries); with ``retries=0`` it fails
  ``get()`` with Ray's WorkerCrashedError; ``retries=2`` also retries a raised exception;
- ``job.stop()`` while distributed tasks run -> CANCELED, the Ray tasks end (Ray's state API), their task runs
  are not left Running, no result;
- the Prefect server restarted while jobs are queued -> they run, results intact.

Every wait polls a deadline; nothing asserts on timing. The module runs its own local Ray head with Ray's
dashboard (``QSFLOW_RAY_DASHBOARD=1``) so that Ray's state API can list tasks.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import PROGRAMS, job_status_events, local_ray_head
from deployments.processes import alive, output_reader
from serverless_compat import QiskitFunction

DEADLINE = 300  # s: the machine is shared and slow at times; every wait is a poll against a deadline
FAULTS = PROGRAMS / "faults"


@pytest.fixture(scope="module", autouse=True)
def ray_head(client) -> Any:
    from deployments.ray_cluster import DASHBOARD_ENV

    os.environ[DASHBOARD_ENV] = "1"
    try:
        with local_ray_head(__name__) as head:
            yield head
    finally:
        os.environ.pop(DASHBOARD_ENV, None)


def _wait(predicate, what: str, deadline: float = DEADLINE) -> Any:
    give_up = time.monotonic() + deadline
    while not (value := predicate()):
        assert time.monotonic() < give_up, f"gave up waiting for {what}"
        time.sleep(0.3)
    return value


def _final_statuses(prefect, job_id: str, until: str) -> list[str]:
    return [e.resource["qsflow.status"] for e in job_status_events(prefect, job_id, until)]


def test_a_task_error_reaches_get_and_unhandled_ends_the_job_error(client, prefect):
    fn = client.upload(QiskitFunction(title="faults-task-raises", entrypoint="task_raises.py",
                                      working_dir=str(FAULTS)))
    handled, unhandled = fn.run(), fn.run(unhandled=True)  # both at once
    assert handled.result(cadence=1) == {"caught": "ZeroDivisionError: division by zero", "after": 2.0}
    assert unhandled.wait(timeout=DEADLINE) == "ERROR"
    logs = unhandled.logs()
    assert "about to divide by zero without a net" in logs
    assert "Traceback (most recent call last)" in logs and "ZeroDivisionError: division by zero" in logs
    assert "ZeroDivisionError" in unhandled.error_message()
    assert _final_statuses(prefect, unhandled.job_id, until="ERROR")[-1] == "ERROR"


def test_a_sigkilled_runner_ends_error_with_one_final_event(client, prefect, tmp_path):
    from deployments import server

    fn = client.upload(QiskitFunction(title="faults-sleepy", entrypoint="sleeps.py",
                                      working_dir=str(PROGRAMS / "sleepy")))
    job = fn.run(marker_dir=str(tmp_path))
    program = int(_wait(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), "the program"))
    runner = output_reader(program)  # the job's runner (the flow run's process) streams the program's output
    assert runner is not None and runner != server.status()["worker_pid"]
    os.kill(runner, signal.SIGKILL)

    assert job.wait(timeout=DEADLINE) == "ERROR"
    state = prefect.read_flow_run(job.job_id).state
    assert state.type.value == "CRASHED", state
    assert "SIGKILL" in (state.message or ""), state.message
    statuses = _final_statuses(prefect, job.job_id, until="ERROR")
    assert statuses.count("ERROR") == 1 and statuses[-1] == "ERROR", statuses
    _wait(lambda: not alive(program), "the program to die with its runner", deadline=60)
    assert not (tmp_path / "finished").exists()


def test_a_dead_ray_worker_is_retried_or_fails_get_clearly(client, tmp_path):
    fn = client.upload(QiskitFunction(title="faults-worker-dies", entrypoint="worker_dies.py",
                                      working_dir=str(FAULTS)))
    job = fn.run(markers=str(tmp_path))
    result = job.result(cadence=1)
    assert job.status() == "DONE"
    dead_pid = int((tmp_path / "died-once").read_text())
    # Ray's default (the classic signature): the lost worker's task ran again on another worker.
    assert result["once"].startswith("survived in ") and result["once"] != f"survived in {dead_pid}"
    assert not alive(dead_pid)
    # retries=2: the first try raised (its marker is written), the retry returned; retries=0: a lost worker is final.
    assert result["raises_once"] == "second try" and (tmp_path / "raised-once").exists()
    assert result["no_retries"].startswith("WorkerCrashedError: "), result["no_retries"]
    assert "worker died" in result["no_retries"]


def test_stop_while_distributed_tasks_run(client, prefect, ray_head, tmp_path):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from ray.util.state import list_tasks

    fn = client.upload(QiskitFunction(title="faults-stop-tasks", entrypoint="tasks_until_stopped.py",
                                      working_dir=str(FAULTS)))
    job = fn.run(pid_dir=str(tmp_path))

    def started() -> list[int]:
        texts = [p.read_text() for p in tmp_path.glob("*.pid")]
        return [int(t) for t in texts] if len(texts) == 2 and all(texts) else []

    pids = _wait(started, "both tasks to start")

    def lingering() -> list:  # the job's tasks Ray still has, not finished or failed
        tasks = list_tasks(address=ray_head["address"], filters=[("name", "=", "linger")], limit=100)
        return [t for t in tasks if t.state not in ("FINISHED", "FAILED")]

    # Ray's state API lists a task from the events its workers send every second: on a warm worker the task (and
    # its pid file) starts sooner than that.
    _wait(lambda: len(lingering()) == 2, "Ray's state API to list both tasks", deadline=30)

    job.stop()
    assert job.wait(timeout=DEADLINE) == "CANCELED"
    _wait(lambda: prefect.read_flow_run(job.job_id).state.type.value == "CANCELLED", "Prefect's Cancelled")
    _wait(lambda: not lingering(), "Ray to end the job's tasks", deadline=120)
    for pid in pids:
        _wait(lambda pid=pid: not alive(pid), f"the Ray worker {pid} to stop", deadline=60)

    def task_runs() -> list:
        return prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[job.job_id])))

    def closed_cancelled() -> bool:
        runs = task_runs()
        return len(runs) == 2 and all(r.state_type.value == "CANCELLED" for r in runs)

    try:
        _wait(closed_cancelled, "the task runs to be closed Cancelled", deadline=120)
    except AssertionError as exc:
        states = [(r.name, r.state_type.value, r.state.message if r.state else None) for r in task_runs()]
        raise AssertionError(f"{exc}; the job's task runs: {states}") from None
    assert job.result() is None
    assert _final_statuses(prefect, job.job_id, until="CANCELED").count("CANCELED") == 1


def test_queued_jobs_survive_a_server_restart(client, prefect):
    from deployments import server
    from deployments.processes import terminate_group

    fn = client.upload(QiskitFunction(title="faults-square", entrypoint="square.py", working_dir=str(FAULTS)))
    before = server.status()
    terminate_group(before["worker_pid"], grace=10.0)  # no worker: the jobs stay queued
    jobs = [fn.run(n=n) for n in range(3)]
    assert {job.status() for job in jobs} == {"QUEUED"}

    terminate_group(before["server_pid"], grace=10.0)
    assert not server.healthy(client.host)
    assert server.ensure_running() == client.host  # same URL: clients and jobs keep working
    assert server.status()["server_pid"] != before["server_pid"]

    assert [job.result(cadence=1) for job in jobs] == [{"n": n, "square": n * n} for n in range(3)]
    assert {job.status() for job in jobs} == {"DONE"}
