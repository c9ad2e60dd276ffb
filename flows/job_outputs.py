"""What the runner publishes about a job besides its result: log routing, error events, Runtime jobs.

The program writes ``[PUBLIC]``/``[PRIVATE]`` logger lines and appends error events and Runtime job
ids to files the runner names (``serverless_compat.job_records``). Here the runner sorts the lines
into the user's and the provider's logs, and, when the program ends, keeps the records in the store
(``jobs/<id>/events.json``, ``jobs/<id>/runtime_jobs.json``) and emits ``qsflow.job.error`` events.
"""

from __future__ import annotations

import json

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from blocks.storage import QsflowStore
from serverless_compat.job_records import (
    ERROR,
    EVENTS_PATH,
    RUNTIME_JOBS_PATH,
    error_event_from_traceback,
    read_records,
)
from serverless_compat.program_logs import PRIVATE, PUBLIC

PROGRAM_LOGGER = "prefect.flow_runs.program"
PROVIDER_LOGGER = "prefect.flow_runs.provider"


def record_paths(job_dir: Path) -> dict[str, str]:
    return {EVENTS_PATH: str(job_dir / "events.jsonl"), RUNTIME_JOBS_PATH: str(job_dir / "runtime_jobs.jsonl")}


def route_line(line: str, provider_function: bool) -> tuple[str, str]:
    """Which log a program's output line belongs to, and its text without the logger prefix."""
    if line.startswith(f"{PRIVATE} "):
        return (PROVIDER_LOGGER if provider_function else PROGRAM_LOGGER), line[len(PRIVATE) + 1:]
    if line.startswith(f"{PUBLIC} "):
        return PROGRAM_LOGGER, line[len(PUBLIC) + 1:]
    return PROGRAM_LOGGER, line


def publish(store: QsflowStore, job_id: str, full_title: str, env: dict[str, str],
            returncode: int, tail: list[str]) -> list[dict]:
    """Keep the job's error events and Runtime job ids in the store; emit the error events."""
    records = read_records(env[EVENTS_PATH])
    if returncode != 0 and not any(r.get("type") == ERROR for r in records):
        data = error_event_from_traceback(tail)
        if data is not None:
            records.append({"type": ERROR, "origin": "runner", "data": data,
                            "created": datetime.now(timezone.utc).isoformat()})
    events = [{"event_type": r.get("type", ERROR), "origin": r.get("origin"), "context": full_title,
               "created": r.get("created"), "data": r.get("data", {})} for r in records]
    if events:
        store.write_bytes(f"jobs/{job_id}/events.json", json.dumps(events).encode())
        _emit_errors(job_id, full_title, events)
    runtime_jobs = read_records(env[RUNTIME_JOBS_PATH])
    if runtime_jobs:
        store.write_bytes(f"jobs/{job_id}/runtime_jobs.json", json.dumps(runtime_jobs).encode())
    return events


def _emit_errors(job_id: str, full_title: str, events: list[dict]) -> None:
    from prefect.events import emit_event

    for event in events:
        if event["event_type"] == ERROR:
            emit_event(
                event="qsflow.job.error",
                resource={"prefect.resource.id": f"prefect.flow-run.{job_id}", "qsflow.function": full_title},
                payload=event["data"],
            )


def cancel_runtime_jobs(env: dict[str, str], log: Callable[[str], None]) -> None:
    """Cancel the Runtime jobs the program started (the job was stopped)."""
    records = read_records(env[RUNTIME_JOBS_PATH])
    if not records or not env.get("QISKIT_IBM_TOKEN"):
        return
    from qiskit_ibm_runtime import QiskitRuntimeService

    service = QiskitRuntimeService(channel=env.get("QISKIT_IBM_CHANNEL") or "ibm_quantum_platform",
                                   token=env["QISKIT_IBM_TOKEN"], instance=env.get("QISKIT_IBM_INSTANCE"))
    for record in records:
        try:
            service.job(record["runtime_job"]).cancel()
            log(f"Cancelled Qiskit Runtime job {record['runtime_job']}.")
        except Exception as exc:  # a finished job cannot be cancelled; say so and go on
            log(f"Could not cancel Qiskit Runtime job {record['runtime_job']}: {exc}")


def read_json(store: QsflowStore, path: str) -> list:
    return json.loads(store.read_bytes(path)) if store.exists(path) else []




