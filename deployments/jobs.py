"""Jobs: flow runs of a program's deployment. Submit, inspect, stop, read results and logs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling

from blocks.storage import QsflowStore
from deployments.programs import read_deployment
from flows import status
from flows.job_outputs import read_json
from flows.runner import JOB_LOGGERS, JOB_TAG, USER_TAG_PREFIX
from flows.status_events import emit_status


class JobNotFound(LookupError):
    """No job with that id exists on this server."""


def submit(client: SyncPrefectClient, full_title: str, encoded_arguments: dict[str, Any], user: str,
           parent_job_id: Optional[str] = None, deployment: Any = None) -> FlowRun:
    """Create a flow run of the program's deployment for ``user``; it waits in QUEUED for a worker.

    With ``parent_job_id`` the job is a subflow run of that job: a task run in the parent stands for it.
    ``deployment``: the program's deployment if the caller has just read it (else it is read here).
    """
    deployment = deployment or read_deployment(client, full_title)
    parent_task_run_id = None
    if parent_job_id:
        parent_task_run_id = _subflow_task_run(client, parent_job_id, full_title).id
    flow_run = client.create_flow_run_from_deployment(
        deployment.id,
        parameters={"arguments": encoded_arguments},
        tags=[JOB_TAG, f"{USER_TAG_PREFIX}{user}"],
        parent_task_run_id=parent_task_run_id,
    )
    emit_status(flow_run.id, full_title, status.QUEUED)
    return flow_run


def _subflow_task_run(client: SyncPrefectClient, parent_job_id: str, full_title: str):
    import uuid

    from prefect import Task
    from prefect.states import Pending

    stand_in = Task(name=f"child job: {full_title}", fn=lambda: None)
    return client.create_task_run(task=stand_in, flow_run_id=UUID(parent_job_id),
                                  dynamic_key=uuid.uuid4().hex, state=Pending())


def read(client: SyncPrefectClient, job_id: str) -> FlowRun:
    try:
        return client.read_flow_run(UUID(str(job_id)))
    except (ObjectNotFound, ValueError):
        raise JobNotFound(f"Job [{job_id}] not found") from None


def job_status(flow_run: FlowRun) -> str:
    state = flow_run.state
    return status.to_job_status(state.type if state else None, state.name if state else None)


def stop(client: SyncPrefectClient, job_id: str) -> str:
    """Ask Prefect to cancel the job; the worker then kills its process (and the program's)."""
    flow_run = read(client, job_id)
    if job_status(flow_run) in status.TERMINAL:
        return f"Job [{job_id}] has already stopped."
    result = client.set_flow_run_state(flow_run.id, Cancelling(message="Stopped by the user (job.stop())."),
                                       force=True)
    # A run no worker picked up yet goes straight to Cancelled (Prefect answers REJECT with that state).
    if result.state is not None and status.to_job_status(result.state.type, result.state.name) == status.CANCELED:
        emit_status(flow_run.id, flow_run.parameters.get("program", flow_run.name), status.CANCELED)
    return f"Job [{job_id}] has been stopped."


def events(store: QsflowStore, job_id: str) -> list[dict[str, Any]]:
    """The job's recorded events (``send_error`` and uncaught errors), oldest first."""
    return read_json(store, f"jobs/{job_id}/events.json")


def runtime_jobs(store: QsflowStore, job_id: str) -> list[dict[str, Any]]:
    """The Qiskit Runtime jobs the program started: ``{"runtime_job", "runtime_session"}`` each."""
    return read_json(store, f"jobs/{job_id}/runtime_jobs.json")


def result_bytes(store: QsflowStore, job_id: str) -> Optional[bytes]:
    path = f"jobs/{job_id}/result.json"
    return store.read_bytes(path) if store.exists(path) else None


def logs(client: SyncPrefectClient, job_id: str, loggers: tuple[str, ...] = JOB_LOGGERS) -> str:
    """Everything the program printed (and the runner's notices), in order, one line per record.

    ``loggers=(PROVIDER_LOGGER,)`` gives a provider function's provider-logger lines instead.
    """
    lines: list[str] = []
    offset = 0
    page = 200
    while True:
        batch = client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(str(job_id))])),
            limit=page, offset=offset, sort=LogSort.TIMESTAMP_ASC,
        )
        lines.extend(record.message for record in batch if record.name in loggers)
        if len(batch) < page:
            break
        offset += page
    return "\n".join(lines) + ("\n" if lines else "")


def list_jobs(client: SyncPrefectClient, full_title: Optional[str] = None, limit: int = 10,
              offset: int = 0, user: Optional[str] = None, job_status: Optional[str] = None,
              created_after: Optional[datetime] = None) -> list[FlowRun]:
    """Jobs, newest first, filtered by Prefect's server: one program's (``full_title``), one user's
    (``user``), in one status (``job_status``, a Qiskit Serverless status string), created after a time.

    Raises ValueError for an unknown status.
    """
    from deployments.programs import deployment_name

    deployment_filter = None
    if full_title is not None:
        deployment_filter = DeploymentFilter(
            name=DeploymentFilterName(any_=[deployment_name(full_title).split("/")[1]])
        )
    state_filter = None
    if job_status is not None:
        types, names = status.state_filter(job_status)
        state_filter = FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType(t) for t in types]),
            name=FlowRunFilterStateName(any_=names) if names else None,
        )
    # A job's expected start time is its creation time: runs of a deployment are created to start now.
    start_filter = FlowRunFilterExpectedStartTime(after_=created_after) if created_after else None
    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[JOB_TAG] + ([f"{USER_TAG_PREFIX}{user}"] if user else [])),
            state=state_filter,
            expected_start_time=start_filter,
        ),
        deployment_filter=deployment_filter,
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=limit, offset=offset,
    )
