"""The program's side of task-run recording: one JSON line per distributed task's submit and end.

A job's program runs in a child process that does not import Prefect (that costs seconds here). The runner
gives it ``QSFLOW_TASK_EVENTS``, a file path; each distributed call appends ``submitted`` and later
``completed``/``failed`` lines to it, and the runner (:mod:`tasks.task_runs`), which already runs the job's
flow run, turns them into Prefect task runs of that flow run. Outside a job the variable is unset and
nothing is recorded.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any, Optional

EVENTS_ENV = "QSFLOW_TASK_EVENTS"


class TaskEventLog:
    """Appends task events to one file; safe to call from Ray's callback threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._handle = open(path, "a", encoding="utf-8")

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()

    def submitted(self, name: str, key: str, tags: list[str]) -> str:
        """Record a task handed to Ray; return its task-run id."""
        run_id = str(uuid.uuid4())
        self._write({"event": "submitted", "id": run_id, "name": name, "key": key, "tags": tags,
                     "ts": time.time()})
        return run_id

    def finished(self, run_id: str, error: Optional[BaseException] = None) -> None:
        record: dict[str, Any] = {"event": "failed" if error else "completed", "id": run_id, "ts": time.time()}
        if error is not None:
            record["message"] = f"{type(error).__name__}: {error}"[:2000]
        self._write(record)

    def watch(self, run_id: str, object_ref: Any) -> None:
        """Record the end of the Ray task behind ``object_ref`` when it comes."""

        def done(future: Any) -> None:
            error = future.exception()
            self.finished(run_id, _cause(error) if error is not None else None)

        object_ref.future().add_done_callback(done)


def _cause(error: BaseException) -> BaseException:
    """The user's exception inside a Ray task error (Ray wraps it)."""
    return getattr(error, "cause", None) or error


_log: Optional[TaskEventLog] = None
_log_lock = threading.Lock()


def event_log() -> Optional[TaskEventLog]:
    """This process's event log when it runs as a job's program, else None."""
    global _log
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return None
    if _log is None or _log.path != path:
        with _log_lock:
            if _log is None or _log.path != path:
                _log = TaskEventLog(path)
    return _log
