"""The runner's side of task-run recording: distributed calls become Prefect task runs of the job's flow run.

The program appends JSON lines to a file (:mod:`tasks.task_events`); a thread in the runner, which is the job's
flow-run process, follows that file and emits Prefect's task-run state events for each line (the same events
Prefect's own task engine emits; the server's task-run recorder turns them into task runs). So every
distributed task shows in the Prefect UI under the job's flow run, tagged with its resources, with its real
submit and end times, while neither the program nor the Ray workers import Prefect or call its API per task.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional
from uuid import UUID

from prefect.client.schemas.objects import TaskRun
from prefect.events import Event
from prefect.states import Completed, Crashed, Failed, Running, State
from prefect.utilities.engine import emit_task_run_state_change_event

from tasks.task_events import EVENTS_ENV

_POLL_SECONDS = 0.05


def _when(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc)


class TaskRunRecorder:
    """Follows one job's task-event file and emits the matching Prefect task-run state events."""

    def __init__(self, path: Path, flow_run_id: UUID) -> None:
        self.path = path
        self.flow_run_id = flow_run_id
        self.recorded = 0
        self._open: dict[str, tuple[TaskRun, State, Optional[Event]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="qsflow-task-runs", daemon=True)
        self._offset = 0
        self._partial = ""

    def start(self) -> None:
        self.path.touch()
        self._thread.start()

    def _read_new(self) -> None:
        with open(self.path, encoding="utf-8") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
            self._offset = handle.tell()
        if not chunk:
            return
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()  # an unterminated last line waits for the rest
        for line in lines:
            if line.strip():
                self._handle(json.loads(line))

    def _follow(self) -> None:
        while not self._stop.wait(_POLL_SECONDS):
            self._read_new()

    def _emit(self, run: TaskRun, before: Optional[State], after: State, follows: Optional[Event]) -> Optional[Event]:
        run.state = after
        run.state_type = after.type
        run.state_name = after.name
        return emit_task_run_state_change_event(task_run=run, initial_state=before, validated_state=after,
                                                follows=follows)

    def _handle(self, record: dict[str, Any]) -> None:
        run_id = record["id"]
        when = _when(record["ts"])
        if record["event"] == "submitted":
            state = Running(timestamp=when)
            run = TaskRun(
                id=UUID(run_id), name=record["name"], flow_run_id=self.flow_run_id, task_key=record["key"],
                dynamic_key=record["name"], tags=record["tags"], run_count=1, start_time=when,
            )
            state.state_details.task_run_id = run.id
            state.state_details.flow_run_id = self.flow_run_id
            event = self._emit(run, None, state, None)
            self._open[run_id] = (run, state, event)
            self.recorded += 1
            return
        if run_id not in self._open:
            return
        run, before, follows = self._open.pop(run_id)
        if record["event"] == "completed":
            after = Completed(timestamp=when)
        else:
            after = Failed(timestamp=when, message=record.get("message", "The task raised an exception."))
        self._finish(run, before, after, follows)

    def _finish(self, run: TaskRun, before: State, after: State, follows: Optional[Event]) -> None:
        after.state_details.task_run_id = run.id
        after.state_details.flow_run_id = self.flow_run_id
        run.end_time = after.timestamp
        if run.start_time is not None and after.timestamp is not None:
            run.total_run_time = after.timestamp - run.start_time
        self._emit(run, before, after, follows)

    def stop(self, program_ended: str) -> None:
        """Read what is left; runs still open end Crashed with ``program_ended`` as the reason."""
        self._stop.set()
        self._thread.join()
        self._read_new()
        now = dt.datetime.now(dt.timezone.utc)
        for run, before, follows in list(self._open.values()):
            self._finish(run, before, Crashed(timestamp=now, message=program_ended), follows)
        self._open.clear()


@contextlib.contextmanager
def recording(job_dir: Path, env: dict[str, str], flow_run_id: Any) -> Iterator[TaskRunRecorder]:
    """Record the distributed tasks of the program run inside this block (``env`` gets the file's path)."""
    recorder = TaskRunRecorder(job_dir / "task_events.jsonl", UUID(str(flow_run_id)))
    env[EVENTS_ENV] = str(recorder.path)
    recorder.start()
    ended = "The program ended before this task finished."
    try:
        yield recorder
    except BaseException:
        ended = "The job stopped or failed before this task finished."
        raise
    finally:
        recorder.stop(ended)


def close_open_task_runs(flow_run_id: Any, job_state: State) -> int:
    """End the task runs of a job that ended (``job_state``: Cancelling/Cancelled, Failed or Crashed) while they
    still ran: their Ray workers went with the program, so no one else will. Cancelled when the job was cancelled,
    else Crashed; returns how many were closed.

    A stopped job's task run may also have closed itself Crashed already: Ray ends a dead driver's busy workers
    with SIGTERM, which Ray turns into ``SystemExit`` and Prefect's task engine into Crashed ("Execution was
    aborted by Python system exit call"). Such a run, Crashed at or after the stop was asked for, is Cancelled
    too: the job's stop ended it. A run that crashed before the stop keeps its Crashed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    cancelled = job_state.type in (StateType.CANCELLING, StateType.CANCELLED)
    reason = f"The job ended {job_state.type.value.lower()} while this task ran; its Ray worker was stopped with it."
    closing = [StateType.PENDING, StateType.RUNNING, StateType.SCHEDULED] + ([StateType.CRASHED] if cancelled else [])
    flow_run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(str(flow_run_id))]))
    with get_client(sync_client=True) as client:
        lag = _recorder_lag()
        if lag and client.read_task_runs(flow_run_filter=flow_run_filter, limit=1):
            # The server records task-run events in batches (deployments.server): runs whose first events are
            # still queued there appear within ``lag``. A job with no recorded task run yet does not wait (its
            # tasks, if any, began less than ``lag`` ago and may be left open: a known, narrow gap).
            time.sleep(lag)
        runs = client.read_task_runs(
            flow_run_filter=flow_run_filter,
            task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=closing))),
        )
        if cancelled and any(run.state_type == StateType.CRASHED for run in runs):
            stopped_at = _stop_requested_at(client, flow_run_id, job_state)
            runs = [run for run in runs if run.state_type != StateType.CRASHED
                    or (run.state and run.state.timestamp and run.state.timestamp >= stopped_at)]
        for run in runs:
            client.set_task_run_state(run.id, Cancelled(message=reason) if cancelled else Crashed(message=reason),
                                      force=True)
    return len(runs)


def _stop_requested_at(client: Any, flow_run_id: Any, job_state: State) -> dt.datetime:
    """When the job's stop was asked for: its first Cancelling state, else ``job_state``'s own time."""
    from prefect.client.schemas.objects import StateType

    times = [s.timestamp for s in client.read_flow_run_states(UUID(str(flow_run_id)))
             if s.type == StateType.CANCELLING and s.timestamp]
    return min(times) if times else job_state.timestamp


def _recorder_lag() -> float:
    """Seconds the Prefect server may hold a task-run event before recording it: its task-run recorder's flush
    interval when it batches (Prefect's settings of this process, which the embedded server sets for its own
    processes and those it starts), else 0."""
    from prefect.settings import get_current_settings

    recorder = get_current_settings().server.services.task_run_recorder
    return recorder.flush_interval + 0.2 if recorder.batch_size > 1 else 0.0
