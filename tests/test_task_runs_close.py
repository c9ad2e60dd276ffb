"""A job that ended while its distributed tasks ran closes their task runs (``tasks.task_runs``), on the session's
real Prefect server: open runs end Cancelled for a stopped job and Crashed for a failed one; a run that closed
itself Crashed after the stop was asked for (Ray's SIGTERM of a dead driver's workers reaches Prefect's task
engine as SystemExit) is Cancelled too; a run that crashed before the stop keeps its Crashed."""

from __future__ import annotations

from prefect import flow, task
from prefect.states import Cancelled, Cancelling, Completed, Crashed, Failed, Running

from tasks.task_runs import close_open_task_runs

SYSTEM_EXIT = "Execution was aborted by Python system exit call."


@flow(name="qsflow-close-task-runs")
def _job() -> None:
    """Stands for a job's flow (never run: its flow run and task runs are made through the API)."""


@task(name="linger")
def _linger() -> None:
    """Stands for a distributed task (never run)."""


def _task_run(prefect, flow_run_id, key: str, state) -> object:
    run = prefect.create_task_run(_linger, flow_run_id=flow_run_id, dynamic_key=key, state=Running())
    if state is not None:
        prefect.set_task_run_state(run.id, state, force=True)
    return run.id


def _states(prefect, ids) -> list[tuple[str, str]]:
    runs = [prefect.read_task_run(i) for i in ids]
    return [(run.state_type.value, run.state.message or "") for run in runs]


def test_a_stopped_job_cancels_its_open_runs_and_those_its_stop_crashed(prefect):
    flow_run = prefect.create_flow_run(_job, state=Running())
    crashed_before = _task_run(prefect, flow_run.id, "0", Crashed(message="a worker died earlier"))
    completed = _task_run(prefect, flow_run.id, "1", Completed())
    prefect.set_flow_run_state(flow_run.id, Cancelling(), force=True)  # job.stop()
    crashed_by_stop = _task_run(prefect, flow_run.id, "2", Crashed(message=SYSTEM_EXIT))
    still_running = _task_run(prefect, flow_run.id, "3", None)
    final = Cancelled()
    prefect.set_flow_run_state(flow_run.id, final, force=True)

    assert close_open_task_runs(flow_run.id, final) == 2
    states = _states(prefect, [crashed_before, completed, crashed_by_stop, still_running])
    assert states[0] == ("CRASHED", "a worker died earlier")
    assert states[1][0] == "COMPLETED"
    assert [s[0] for s in states[2:]] == ["CANCELLED", "CANCELLED"]
    assert all("The job ended cancelled while this task ran" in s[1] for s in states[2:]), states
    assert close_open_task_runs(flow_run.id, final) == 0  # nothing is closed twice


def test_a_failed_job_crashes_its_open_runs_and_keeps_other_ends(prefect):
    flow_run = prefect.create_flow_run(_job, state=Running())
    crashed = _task_run(prefect, flow_run.id, "0", Crashed(message=SYSTEM_EXIT))
    failed = _task_run(prefect, flow_run.id, "1", Failed(message="ValueError: bad input"))
    running = _task_run(prefect, flow_run.id, "2", None)
    final = Failed(message="the program raised")
    prefect.set_flow_run_state(flow_run.id, final, force=True)

    assert close_open_task_runs(flow_run.id, final) == 1
    states = _states(prefect, [crashed, failed, running])
    assert states[0] == ("CRASHED", SYSTEM_EXIT)
    assert states[1] == ("FAILED", "ValueError: bad input")
    assert states[2][0] == "CRASHED" and "The job ended failed while this task ran" in states[2][1]
