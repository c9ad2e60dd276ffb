"""The prefect-ray engine of distribute_task: Prefect tasks on prefect-ray's RayTaskRunner, on a real 2-CPU local
Ray head and the session's real Prefect server.

The module starts its own local head (2 CPUs, 2 ``qsflow_widget``) and stops it at the end, like
tests/test_distribute.py. The job's program is tests/programs/prefect_ray_tasks/main.py.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import PROGRAMS, local_ray_head
from serverless_compat import QiskitFunction, distribute_task, get
from tasks.distributed import ENGINE_ENV, selected_engine

TASKS = 6


@pytest.fixture(scope="module", autouse=True)
def ray_head(qsflow_home: Path) -> Any:
    """A fresh local head with known capacity, this process connected to it; all stopped at module end."""
    with local_ray_head(__name__) as head:
        yield head


# --- choosing the engine, no job ------------------------------------------------------------------------

def test_unknown_engines_are_refused_naming_the_valid_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="Unknown distribute_task engine 'dask'; valid engines: 'direct', "
                                         "'prefect-ray'"):
        distribute_task(engine="dask")

    @distribute_task(target={"cpu": 0.5})
    def one() -> int:
        return 1

    monkeypatch.setenv(ENGINE_ENV, "prefect_ray")
    with pytest.raises(ValueError, match=f"Unknown distribute_task {ENGINE_ENV} 'prefect_ray'; valid engines"):
        one()
    monkeypatch.setenv(ENGINE_ENV, "direct")
    assert selected_engine() == "direct" and selected_engine("prefect-ray") == "prefect-ray"
    monkeypatch.delenv(ENGINE_ENV)
    assert selected_engine() == "prefect-ray"  # the default: the design card's engine


def test_outside_a_job_the_prefect_ray_engine_runs_tasks_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.delenv("QSFLOW_JOB_ID", raising=False)

    @distribute_task(target={"cpu": 0.5}, engine="prefect-ray")
    def double(x: int) -> int:
        return 2 * x

    ref = double(21)
    assert isinstance(ref, ray.ObjectRef)  # no flow run to attach to: a plain Ray task, nothing recorded
    assert get(ref) == 42


# --- inside a job ------------------------------------------------------------------------------------

def _final_task_runs(prefect: Any, job_id: str, expected: int, timeout: float = 90) -> list:
    """The job's task runs once ``expected`` of them are final (they arrive through Prefect's events)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    while True:
        runs = prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[job_id])))
        final = [r for r in runs if r.state_type and r.state_type.value in {"COMPLETED", "FAILED", "CRASHED"}]
        if len(final) >= expected:
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(final)} of {len(runs)} task runs final, wanted {expected}: "
                                 f"{[(r.name, r.state_name) for r in runs]}")
        time.sleep(0.5)


def test_job_tasks_run_as_prefect_tasks_on_ray_task_runner(client, prefect) -> None:
    function = client.upload(QiskitFunction(
        title="prefect-ray-tasks", entrypoint="main.py", working_dir=str(PROGRAMS / "prefect_ray_tasks"),
    ))  # cube() has no engine=: the default engine, prefect-ray
    # Prefect's tag-based concurrency applies to the task runs' resource tags: one held() at a time
    limited_tag = "resource:qsflow_widget=0.5"
    prefect.create_concurrency_limit(tag=limited_tag, concurrency_limit=1)
    try:
        started = time.monotonic()
        job = function.run(tasks=TASKS)
        result = job.result(cadence=1)
    finally:
        prefect.delete_concurrency_limit_by_tag(limited_tag)
    print(f"job done in {time.monotonic() - started:.1f} s; first batch of {TASKS} tasks "
          f"{result['first_batch_s']:.1f} s")

    # values, refs, errors and resources, as the program saw them
    # refs are Ray ObjectRefs of the values (as Qiskit Serverless's), each the result of a Prefect task run
    assert result["ref_type"] == "ObjectRef" and result["cube_ref_type"] == "ObjectRef"
    assert result["ray_get"] == [0, 1] and result["ray_waited"] == 2
    assert result["squares"] == [i * i for i in range(TASKS)]
    assert result["total_of_put"] == 46 and result["total_of_future"] == 12
    assert result["error"] == ["Unlucky", "13 is unlucky"]
    assert result["cubes"] == [0, 1, 8] and result["plain"] == 2
    resources, single_thread = result["assigned"]
    assert resources == {"CPU": 0.5, "memory": 64 * 1024 * 1024, "qsflow_widget": 1.0}
    assert single_thread == "TRUE"  # half a CPU: Qiskit runs on one thread in the task (tasks.qiskit_threads)
    # a worker unpickles each task once: the program's module state lasts across the calls a worker runs
    per_worker: dict[int, list[int]] = {}
    for pid, count in result["remembered"]:
        per_worker.setdefault(pid, []).append(count)
    assert all(counts == list(range(1, len(counts) + 1)) for counts in per_worker.values()), per_worker
    assert max(max(counts) for counts in per_worker.values()) > 1, per_worker
    (start_a, end_a), (start_b, end_b) = result["held"]
    assert end_a <= start_b or end_b <= start_a, "two task runs under a tag concurrency limit of 1 overlapped"

    # the job's log holds what the tasks print, not Prefect's own task-run lines (those are the task runs' logs)
    logs = job.logs()
    assert all(f"squaring {i}" in logs for i in range(TASKS)), logs
    assert "Finished in state" not in logs and "repeated" not in logs and "\x1b[" not in logs, logs

    # every call is one task run of the job's flow run: the engine's own, or (plain) the runner's, never both
    functions = {"square": TASKS + 3, "assigned": 1, "total": 2, "unlucky": 1, "cube": 3, "plain": 1, "held": 2,
                 "remember": 8}
    runs = _final_task_runs(prefect, job.job_id, expected=sum(functions.values()))
    assert all(str(r.flow_run_id) == job.job_id for r in runs)
    by_function = Counter(r.name.rsplit("-", 1)[0] for r in runs)
    assert by_function == functions, [r.name for r in runs]

    engine_runs = [r for r in runs if not r.name.startswith("plain")]
    assert all({"distributed", "cpu:0.5", "gpu:0", "engine:prefect-ray"} <= set(r.tags) for r in engine_runs)
    (assigned,) = [r for r in runs if r.name.startswith("assigned")]
    assert {f"mem:{64 * 1024 * 1024}", "resource:qsflow_widget=1"} <= set(assigned.tags)
    (plain,) = [r for r in runs if r.name.startswith("plain")]
    assert "engine:prefect-ray" not in plain.tags and plain.state_type.value == "COMPLETED"

    # a call's ref passed to another call links their task runs (lineage in the UI)
    ids = {str(r.id): r for r in runs}
    linked = [r for r in runs if r.name.startswith("total") and r.task_inputs.get("offset")]
    assert len(linked) == 1, [(r.name, r.task_inputs) for r in runs if r.name.startswith("total")]
    (upstream,) = linked[0].task_inputs["offset"]
    assert ids[str(upstream.id)].name.startswith("square")

    (failed,) = [r for r in runs if r.state_type.value != "COMPLETED"]
    assert failed.name.startswith("unlucky") and failed.state_type.value == "FAILED"
    # the worker's engine is handed the run it creates: no Pending event just before Running (docs/distribute.md)
    cube_run = next(r for r in runs if r.name.startswith("cube"))
    assert [s.name for s in _ordered_states(prefect, cube_run.id)] == ["Running", "Completed"]
    assert [s.name for s in _ordered_states(prefect, failed.id)] == ["Running", "Failed"]
    assert "13 is unlucky" in (failed.state.message or "")
    assert all(r.start_time is not None and r.end_time is not None for r in runs)

    # a task run's state events name its flow run, flow and own tags, not the job's deployment, work pool or
    # tags (each related resource costs the server a row; docs/distribute.md)
    related = _task_run_event_related(prefect, cube_run.id)
    assert f"prefect.flow-run.{job.job_id}" in related and any(r.startswith("prefect.flow.") for r in related)
    assert "prefect.tag.engine:prefect-ray" in related
    assert not [r for r in related if r.split(".")[1] in ("deployment", "work-queue", "work-pool")], related
    assert "prefect.tag.qsflow-job" not in related, related


def _ordered_states(prefect: Any, task_run_id: Any) -> list[Any]:
    """A task run's recorded states, oldest first."""
    return sorted(prefect.read_task_run_states(task_run_id), key=lambda state: state.timestamp)


def _task_run_event_related(prefect: Any, task_run_id: Any, timeout: float = 60) -> set[str]:
    """The related resource ids of a task run's Completed event (polled for until the server has stored it)."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    deadline = time.monotonic() + timeout
    while True:
        event_filter = EventFilter(event=EventNameFilter(name=["prefect.task-run.Completed"]),
                                   resource=EventResourceFilter(id=[f"prefect.task-run.{task_run_id}"]))
        events = prefect.read_events(event_filter, limit=5).events
        if events:
            return {resource.id for resource in events[0].related}
        assert time.monotonic() < deadline, f"no Completed event stored for task run {task_run_id}"
        time.sleep(0.5)


def test_without_prefect_in_the_program_environment_calls_fall_back_to_the_direct_engine(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    import ray

    from tasks import distributed

    monkeypatch.setenv("QSFLOW_JOB_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setitem(sys.modules, "tasks.prefect_ray_engine", None)  # importing it raises ImportError
    monkeypatch.setattr(distributed, "_engine_unavailable", None)

    @distribute_task(target={"cpu": 0.5})
    def triple(x: int) -> int:
        return 3 * x

    refs = [triple(1), triple(2)]
    assert all(isinstance(ref, ray.ObjectRef) for ref in refs) and get(refs) == [3, 6]
    warning = capsys.readouterr().err
    assert warning.count("distribute_task runs on the direct engine in this job") == 1  # said once
    assert "Prefect cannot be imported" in warning and "None in sys.modules" in warning and "dependencies" in warning


def test_cache_true_returns_the_stored_value_without_running_the_body_again(client, prefect, tmp_path) -> None:
    function = client.upload(QiskitFunction(
        title="distribute-cache", entrypoint="main.py", working_dir=str(PROGRAMS / "distribute_cache"),
    ))
    runs_file = tmp_path / "runs.txt"
    first = function.run(runs_file=str(runs_file))
    assert first.result(cadence=1) == {"values": [{"value": 20}, {"value": 20}, {"value": 30}, 3, 3]}
    ran = [line.split()[:2] for line in runs_file.read_text().splitlines()]
    # heavy(2) ran once (its second call was served from the cache), heavy(3) once; the default (NO_CACHE) twice
    assert sorted(map(tuple, ran)) == [("heavy", "2"), ("heavy", "3"), ("uncached", "2"), ("uncached", "2")], ran

    runs = _final_task_runs(prefect, first.job_id, expected=5)
    states = Counter((r.name.rsplit("-", 1)[0], r.state_name) for r in runs)
    assert states == {("heavy", "Completed"): 2, ("heavy", "Cached"): 1, ("uncached", "Completed"): 2}, states

    # the cache outlives the job: another job's identical call does not run the body either
    second = function.run(runs_file=str(runs_file))
    assert second.result(cadence=1)["values"][:3] == [{"value": 20}, {"value": 20}, {"value": 30}]
    ran_again = [line.split()[:2] for line in runs_file.read_text().splitlines()][len(ran):]
    assert sorted(map(tuple, ran_again)) == [("uncached", "2"), ("uncached", "2")], ran_again


def test_cache_takes_a_boolean() -> None:
    with pytest.raises(TypeError, match=r"cache=\.\.\.\) takes True or False, not 'yes'"):
        distribute_task(cache="yes")
