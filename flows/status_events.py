"""``qsflow.job.status``: one Prefect event per status change of a job.

Each event names the job (resource ``prefect.flow-run.<job id>``, so the Prefect UI lists it in the
flow run's event feed), the program and the Qiskit Serverless status string, as resource labels
(``qsflow.job``, ``qsflow.function``, ``qsflow.status``: what automations match on) and as payload.

Who emits what — each change is emitted by the process that makes it:

- ``QUEUED``: the client, when it creates the flow run (``deployments.jobs.submit``). A run created
  around the client (a schedule, a trigger, the Prefect UI) gets its QUEUED from the runner when it
  starts, dated back to the run's creation.
- ``INITIALIZING``, ``RUNNING``, ``RUNNING: <sub-status>``: the runner, once Prefect accepted the state
  (a program's own ``update_status`` posts its event over the REST API, ``post_status_soon``: from a
  background thread, flushed before the program exits).
- ``DONE`` / ``ERROR``: the runner flow's completion/failure/crash hooks, after Prefect recorded the
  final state. A runner that is killed runs no hook: its worker sees the process exit, reports the run
  Crashed and runs the crash hook itself.
- ``CANCELED``: ``job.stop()`` (``deployments.jobs.stop``), once Prefect accepted ``Cancelling``; for a
  cancel from anywhere else (the Prefect UI, the API) the worker's cancellation hook, after it killed
  the runner.
- All three again from the server's own automations (``deployments.status_relay``): at once for every
  Failed, Crashed or Cancelled state Prefect records, and for a Completed one when no DONE followed within
  10 s. They are the only report of an end no process saw (a queued run cancelled, a run Crashed by
  Prefect's server, a machine lost between the final state and the hook's event). The hook's DONE names
  the state's type and the run's pool, as the state's event does, so the server counts it for the run.

A final status's event has one id per job and status (:func:`final_event_id`): Prefect's server keeps
one event per id, so a job gets exactly one final event however many of these sides report it.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from typing import Any, Optional

STATUS_EVENT = "qsflow.job.status"
# The first 8 hex digits of a final status event's id; the rest are the job id's (final_event_id).
FINAL_ID_PREFIXES = {"DONE": "d0e0d0e0", "ERROR": "e4404e44", "CANCELED": "ca9ce1ed"}


def final_event_id(job_id: str, job_status: str) -> Optional[str]:
    """The one id every emitter gives ``job_status``'s event for ``job_id`` when it is final, else None."""
    prefix = FINAL_ID_PREFIXES.get(job_status)
    return f"{prefix}{str(job_id)[8:]}" if prefix else None


def status_resource(job_id: str, function: str, job_status: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"prefect.flow-run.{job_id}",
        "qsflow.job": str(job_id),
        "qsflow.function": function,
        "qsflow.status": job_status,
    }


def emit_status(job_id: Any, function: str, job_status: str, occurred: Optional[datetime] = None) -> None:
    """Emit ``qsflow.job.status`` for ``job_id`` of program ``function`` entering ``job_status``."""
    from prefect.events import emit_event

    extra: dict[str, Any] = {"occurred": occurred} if occurred is not None else {}
    final_id = final_event_id(str(job_id), job_status)
    if final_id is not None:
        from uuid import UUID

        extra["id"] = UUID(final_id)
    emit_event(
        event=STATUS_EVENT,
        resource=status_resource(str(job_id), function, job_status),
        payload={"job_id": str(job_id), "function": function, "status": job_status},
        **extra,
    )


def status_event(job_id: str, function: str, job_status: str, state_type: Optional[str] = None,
                 work_pool: Optional[tuple[Any, str]] = None) -> dict[str, Any]:
    """The ``qsflow.job.status`` event as Prefect's REST API takes it, dated now.

    A final status's event can also name the type of the state that ended the job (``prefect.state-type``) and
    relate the run's ``work_pool`` (id, name), as that state's own event does: the server's relay of Completed
    runs recognises the runner's DONE by them (``deployments.status_relay``)."""
    import uuid
    from datetime import timezone

    resource = status_resource(job_id, function, job_status)
    if state_type is not None:
        resource["prefect.state-type"] = state_type
    related = [] if work_pool is None else [{"prefect.resource.id": f"prefect.work-pool.{work_pool[0]}",
                                             "prefect.resource.role": "work-pool",
                                             "prefect.resource.name": work_pool[1]}]
    return {"id": final_event_id(job_id, job_status) or str(uuid.uuid4()),
            "occurred": datetime.now(timezone.utc).isoformat(), "event": STATUS_EVENT,
            "resource": resource, "related": related,
            "payload": {"job_id": job_id, "function": function, "status": job_status}}


def post_status(api: str, headers: dict[str, str], job_id: str, function: str, job_status: str,
                http: Any = None, **final: Any) -> None:
    """Emit the event over Prefect's REST API (no Prefect import needed: a program's process), answered before
    this returns; with the ``httpx.Client`` ``http``, else the process's kept one (:func:`http_client`);
    ``final``: ``state_type`` and ``work_pool`` of :func:`status_event`."""
    _send(api, headers, status_event(job_id, function, job_status, **final), http)


def post_status_soon(api: str, headers: dict[str, str], job_id: str, function: str, job_status: str) -> None:
    """:func:`post_status` from a background thread: the event is dated now and sent in order with the others,
    and every queued one is sent before the process exits (``atexit``), so before its job ends. A program's
    ``update_status`` returns once the status is set, without waiting another round trip for its event."""
    global _sender
    event = status_event(job_id, function, job_status)
    with _lock:
        if _sender is None or _sender[2] != os.getpid():  # none yet, or this is a fork of the process that had it
            import atexit
            import queue

            queued: Any = queue.Queue()
            thread = threading.Thread(target=_send_queued, args=(queued,), name="qsflow-status-events", daemon=True)
            _sender = (queued, thread, os.getpid())
            thread.start()
            atexit.register(flush_soon_posted)
        _sender[0].put((api, headers, event))


def flush_soon_posted(timeout: float = 60.0) -> None:
    """Wait until every event :func:`post_status_soon` queued has been sent (or ``timeout`` s passed)."""
    if _sender is None or _sender[2] != os.getpid():
        return
    done = threading.Event()
    _sender[0].put(done)
    done.wait(timeout)


def _send_queued(queued: Any) -> None:
    while True:
        item = queued.get()
        if isinstance(item, threading.Event):
            item.set()
        else:
            _send(*item)


def _send(api: str, headers: dict[str, str], event: dict[str, Any], http: Any = None) -> None:
    import httpx

    try:
        (http or http_client()).post(f"{api.rstrip('/')}/events", json=[event], headers=headers,
                                     timeout=30).raise_for_status()
    except httpx.HTTPError as exc:  # the status itself is set; a lost event must not fail the program
        import logging

        logging.getLogger(__name__).warning("Could not emit %s %s: %s", STATUS_EVENT,
                                            event["payload"]["status"], exc)


_lock = threading.Lock()
_sender: Optional[tuple[Any, threading.Thread, int]] = None
_http: Any = None


def http_client(verify: Any = True) -> Any:
    """This process's one ``httpx.Client`` for posting to the API: a new one per call costs ~20-30 ms of CPU (its
    TLS context) and a new connection. Safe to share between threads. ``verify``: httpx's, for the first call
    (a TLS context already built is ~1.5 ms instead)."""
    global _http
    with _lock:
        if _http is None:
            import httpx

            _http = httpx.Client(timeout=30, verify=verify)
        return _http


def _final_status_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """A runner-flow hook: emit the job's final status (DONE, ERROR or CANCELED) once Prefect recorded it,
    then record its usage table and result summary as artifacts (``flows.job_usage``).

    Completion and failure hooks run in the runner's process; the crash and cancellation hooks of a
    killed runner run in the worker that ran it (Prefect's process worker loads the flow to run them)."""
    from flows import job_usage, status

    function = (flow_run.parameters or {}).get("program", flow_run.name)
    job_status = status.to_job_status(state.type, state.name)
    _flush()  # the job's earlier events first
    # Over REST, answered before this process may end (a new websocket events client here would cost a client, a
    # connection and a version check per job); its id is the one every other emitter gives it.
    from prefect.settings import PREFECT_API_URL

    from deployments.api_auth import configured_headers
    from deployments.connection import shared_tls_context

    pool = (flow_run.work_pool_id, flow_run.work_pool_name or "") if flow_run.work_pool_id else None
    post_status(PREFECT_API_URL.value(), configured_headers(), str(flow_run.id), function, job_status,
                http=http_client(verify=shared_tls_context()), state_type=state.type.value, work_pool=pool)
    if job_status != status.DONE:  # distributed tasks still running when the job ended went with it
        from tasks.task_runs import close_open_task_runs

        close_open_task_runs(flow_run.id, state)
    from flows.runner import job_store

    store = job_store(flow_run.id)
    path = f"jobs/{flow_run.id}/result.json"
    job_usage.create_artifacts(flow_run.id, function, store.read_bytes(path) if store.exists(path) else None)


def _flush() -> None:
    """Send queued events now: the runner's process may end right after the final state.

    Only the events workers: Prefect's ``EventsWorker.drain_all()`` drains every queue service of the process,
    its log worker too, which cost a job one more log request (and its wait) before its DONE."""
    from prefect.events.worker import EventsWorker

    for service in tuple(EventsWorker._instances.values()):
        if isinstance(service, EventsWorker):
            service.drain()


FINAL_HOOKS = {"on_completion": [_final_status_hook], "on_failure": [_final_status_hook],
               "on_crashed": [_final_status_hook], "on_cancellation": [_final_status_hook]}
