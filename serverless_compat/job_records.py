"""What a program records about its job besides its result: error events and Runtime job ids.

Inside a job, the runner names two files (``QSFLOW_EVENTS_PATH``, ``QSFLOW_RUNTIME_JOBS_PATH``);
the program appends one JSON line per record, and the runner publishes them when the program
ends (Prefect events, the job's record in the store). Outside a job they are only logged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone

from typing import Any, Optional

EVENTS_PATH = "QSFLOW_EVENTS_PATH"
RUNTIME_JOBS_PATH = "QSFLOW_RUNTIME_JOBS_PATH"
ERROR = "ERROR"

logger = logging.getLogger("qiskit_serverless")


def _append(env_name: str, record: dict[str, Any]) -> bool:
    path = os.environ.get(env_name)
    if not path:
        return False
    record.setdefault("created", datetime.now(timezone.utc).isoformat())
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
    return True


def read_records(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


def send_error(code: Any, message: str, exception: str, args: Optional[dict[str, Any]] = None) -> bool:
    """Record an error event for the job and go on; True when recorded (inside a job)."""
    data = {"code": str(code), "message": str(message), "exception": str(exception)}
    if args is not None:
        data["args"] = args
    if _append(EVENTS_PATH, {"type": ERROR, "origin": "program", "data": data}):
        return True
    logger.error("Error %s: %s\n%s", code, message, exception)
    return False


def record_runtime_job(job_id: str, session_id: Optional[str] = None) -> None:
    _append(RUNTIME_JOBS_PATH, {"runtime_job": job_id, "runtime_session": session_id})


def error_event_for(exc: BaseException) -> dict[str, Any]:
    """The error event of an uncaught exception: a ServerlessError's fields, else code 1."""
    from serverless_compat.errors import ServerlessError

    if isinstance(exc, ServerlessError):
        data = {"code": str(exc.code), "message": exc.message, "exception": type(exc).__name__}
        if exc.details:
            data["args"] = exc.details if isinstance(exc.details, dict) else {"details": str(exc.details)}
        return data
    return {"code": "1", "message": f"{type(exc).__name__}: {exc}", "exception": type(exc).__name__}


def _record_uncaught(exc_type, exc, tb) -> None:
    try:
        if not any(r.get("type") == ERROR for r in read_records(os.environ[EVENTS_PATH])):
            _append(EVENTS_PATH, {"type": ERROR, "origin": "uncaught", "data": error_event_for(exc)})
    finally:
        _previous_hook(exc_type, exc, tb)


_previous_hook = sys.excepthook
if os.environ.get(EVENTS_PATH) and sys.excepthook is not _record_uncaught:
    sys.excepthook = _record_uncaught


def error_event_from_traceback(lines: list[str]) -> Optional[dict[str, Any]]:
    """For programs that never imported qsflow's shim: the error from the traceback's last line."""
    start = max((i for i, line in enumerate(lines) if line.startswith("Traceback")), default=None)
    if start is None:
        return None
    for line in reversed(lines[start:]):
        if line and not line.startswith((" ", "\t")):
            name, _, text = line.partition(": ")
            exception = name.rsplit(".", 1)[-1]
            return {"code": "1", "message": f"{exception}: {text}" if text else exception, "exception": exception}
    return None



