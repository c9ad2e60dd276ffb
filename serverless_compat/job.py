"""``Job``: one run of a function, as Qiskit Serverless's client exposes it."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from flows import status as _status
from serverless_compat.errors import QiskitServerlessException, format_err_event

if TYPE_CHECKING:
    from serverless_compat.client import BaseClient


@dataclass
class JobEvent:
    """An event recorded for a job (today: ``ERROR`` events from ``send_error`` or an uncaught error)."""

    event_type: str
    origin: Optional[str]
    context: Optional[str]
    created: Optional[str]
    data: dict

    @classmethod
    def from_json(cls, data: dict) -> "JobEvent":
        return cls(**{k: data.get(k) for k in ("event_type", "origin", "context", "created")},
                   data=dict(data.get("data") or {}))


EVENT_TYPES = ["ERROR"]


@dataclass
class Configuration:
    """Cluster configuration of a job (accepted for compatibility; Ray resources come from targets)."""

    workers: Optional[int] = None
    min_workers: Optional[int] = None
    max_workers: Optional[int] = None
    auto_scaling: Optional[bool] = False


class Job:
    """A job: a Prefect flow run of the function's deployment; ``job_id`` is the flow run id."""

    PENDING: ClassVar[str] = "PENDING"
    RUNNING: ClassVar[str] = "RUNNING"
    STOPPED: ClassVar[str] = "STOPPED"
    SUCCEEDED: ClassVar[str] = "SUCCEEDED"
    FAILED: ClassVar[str] = "FAILED"
    QUEUED: ClassVar[str] = "QUEUED"
    MAPPING: ClassVar[str] = "MAPPING"
    OPTIMIZING_HARDWARE: ClassVar[str] = "OPTIMIZING_HARDWARE"
    WAITING_QPU: ClassVar[str] = "WAITING_QPU"
    EXECUTING_QPU: ClassVar[str] = "EXECUTING_QPU"
    POST_PROCESSING: ClassVar[str] = "POST_PROCESSING"

    def __init__(self, job_id: str, job_service: "BaseClient", raw_data: Optional[dict] = None):
        self.job_id = str(job_id)
        self._job_service = job_service
        self.raw_data = raw_data or {}

    def __repr__(self) -> str:
        return f"<Job | {self.job_id}>"

    def status(self) -> str:
        """``QUEUED``, ``INITIALIZING``, ``RUNNING``, ``RUNNING: <sub-status>``, ``DONE``, ``ERROR`` or ``CANCELED``."""
        return self._job_service.status(self.job_id)

    def in_terminal_state(self) -> bool:
        return self.status() in _status.TERMINAL

    def cancel(self, service: Any = None) -> str:
        """Stop the job: it ends CANCELED and its program is killed."""
        return self._job_service.stop(self.job_id, service=service)

    def stop(self, service: Any = None) -> str:
        """Stop the job (Qiskit Serverless's older name for :meth:`cancel`)."""
        return self.cancel(service=service)

    def logs(self) -> str:
        """Everything the program printed or logged so far."""
        return self._job_service.logs(self.job_id)

    def filtered_logs(self, include: Optional[str] = None, exclude: Optional[str] = None) -> str:
        """Log lines matching the regex ``include`` and not ``exclude``."""
        lines = self.logs().split("\n")
        if include is not None:
            lines = [line for line in lines if re.search(include, line)]
        return "".join(
            f"{line}\n" for line in lines
            if line and (exclude is None or not re.search(exclude, line))
        )

    def provider_logs(self) -> str:
        """A provider function's provider-logger lines (provider members only)."""
        return self._job_service.provider_logs(self.job_id)

    def events(self, type: Optional[str] = None) -> list[JobEvent]:
        """The job's recorded events, optionally of one ``type`` (``"ERROR"``)."""
        if type is not None and type not in EVENT_TYPES:
            raise QiskitServerlessException(f"Type is not valid. Valid types: {EVENT_TYPES}")
        events = [JobEvent.from_json(e) for e in self._job_service.events(self.job_id)]
        return [e for e in events if type is None or e.event_type == type]

    def resource_usage(self) -> dict[str, dict[str, float]]:
        """Wall time the job spent in each status so far: ``{"RUNNING: MAPPING": {"WALL_TIME": 1.2}, ...}``.

        Computed from the flow run's state history, in the order the statuses were entered; a
        terminal status takes no time. (Named apart from the client's ``usage()``: IBM Quantum quota.)
        """
        return self._job_service.resource_usage(self.job_id)

    def runtime_jobs(self, runtime_session: Optional[str] = None) -> list[str]:
        """Ids of the Qiskit Runtime jobs the program started (in ``runtime_session`` if given)."""
        return [r["runtime_job"] for r in self._job_service.runtime_jobs(self.job_id)
                if runtime_session is None or r.get("runtime_session") == runtime_session]

    def runtime_sessions(self) -> list[str]:
        return sorted({r["runtime_session"] for r in self._job_service.runtime_jobs(self.job_id)
                       if r.get("runtime_session")})

    def error_message(self) -> str:
        """For an ERROR job, its error events in Qiskit Serverless's format (or why it crashed); else ``""``."""
        if self.status() != _status.ERROR:
            return ""
        errors = self.events(type="ERROR")
        if errors:
            return "\n\n".join(format_err_event(e.data) for e in errors)
        return self._job_service.error_message(self.job_id)

    def wait(self, timeout: Optional[float] = None, poll: float = 0.2) -> str:
        """Block until the job reaches DONE, ERROR or CANCELED; return that status.

        Returns as soon as the server records the end (its event stream says so); ``poll`` is how often the
        status is read instead where the stream cannot be opened."""
        status = self._job_service.wait(self.job_id, timeout, poll)
        if status is None:
            raise TimeoutError(f"Job {self.job_id} is still {self.status()} after {timeout} s.")
        return status

    def result(self, wait: bool = True, cadence: float = 30, verbose: bool = False, maxwait: int = 0) -> Any:
        """The value the program passed to ``save_result``, Qiskit objects decoded.

        With ``wait`` it blocks until the job ends, checking at least every ``cadence`` seconds
        (``maxwait`` > 0 gives up after that many checks). Raises QiskitServerlessException with
        the error for an ERROR job.
        """
        ended_as = None
        if wait:
            count = 0
            while maxwait == 0 or count < maxwait:
                count += 1
                if verbose:
                    logging.info("Waiting for job result. (%d)", count)
                ended_as = self._job_service.wait(self.job_id, timeout=cadence, poll=min(0.2, cadence))
                if ended_as is not None:
                    break
        if (ended_as or self.status()) == _status.ERROR:
            raise QiskitServerlessException(self.error_message())
        return self._job_service.result(self.job_id)

