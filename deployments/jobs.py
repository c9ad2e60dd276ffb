"""Jobs: flow runs of a program's deployment. Submit, inspect, stop, read results and logs."""

from __future__ import annotations

from typing import Any, Optional
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling

from blocks.storage import QsflowStore
from deployments.programs import read_deployment
from flows import status
from flows.runner import JOB_LOGGERS, USER_TAG_PREFIX

JOB_TAG = "qsflow-job"


class JobNotFound(LookupError):
    """No job with that id exists on this server."""


def submit(client: SyncPrefectClient, full_title: str, encoded_arguments: dict[str, Any], user: str) -> FlowRun:
    """Create a flow run of the program's deployment for ``user``; it waits in QUEUED for a worker."""
    deployment = read_deployment(client, full_title)
    return client.create_flow_run_from_deployment(
        deployment.id,
        parameters={"arguments": encoded_arguments},
        tags=[JOB_TAG, f"{USER_TAG_PREFIX}{user}"],
    )


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
    client.set_flow_run_state(flow_run.id, Cancelling(message="Stopped by the user (job.stop())."), force=True)
    return f"Job [{job_id}] has been stopped."


def result_bytes(store: QsflowStore, job_id: str) -> Optional[bytes]:
    path = f"jobs/{job_id}/result.json"
    return store.read_bytes(path) if store.exists(path) else None


def logs(client: SyncPrefectClient, job_id: str) -> str:
    """Everything the program printed (and the runner's notices), in order, one line per record."""
    lines: list[str] = []
    offset = 0
    page = 200
    while True:
        batch = client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(str(job_id))])),
            limit=page, offset=offset, sort=LogSort.TIMESTAMP_ASC,
        )
        lines.extend(record.message for record in batch if record.name in JOB_LOGGERS)
        if len(batch) < page:
            break
        offset += page
    return "\n".join(lines) + ("\n" if lines else "")


def list_jobs(client: SyncPrefectClient, full_title: Optional[str] = None, limit: int = 10,
              offset: int = 0) -> list[FlowRun]:
    """Jobs, newest first; only those of one program when ``full_title`` is given."""
    from deployments.programs import deployment_name

    deployment_filter = None
    if full_title is not None:
        deployment_filter = DeploymentFilter(
            name=DeploymentFilterName(any_=[deployment_name(full_title).split("/")[1]])
        )
    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[JOB_TAG])),
        deployment_filter=deployment_filter,
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=limit, offset=offset,
    )
