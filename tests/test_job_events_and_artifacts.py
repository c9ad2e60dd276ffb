"""Every status change of a job is a Prefect event ``qsflow.job.status`` (read back through Prefect's
events API); a finished job has a resource-usage table and a result summary as Prefect artifacts."""

from __future__ import annotations

import time

import pytest

from serverless_compat import QiskitFunction

from conftest import PROGRAMS

EVENT_DEADLINE = 60


def status_events(prefect, job_id: str, until: str) -> list:
    """The job's status events, oldest first, once the one with status ``until`` is recorded."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOrder, EventResourceFilter

    event_filter = EventFilter(event=EventNameFilter(name=["qsflow.job.status"]),
                               resource=EventResourceFilter(id=[f"prefect.flow-run.{job_id}"]),
                               order=EventOrder.ASC)
    deadline = time.monotonic() + EVENT_DEADLINE
    while True:
        events = prefect.read_events(event_filter, limit=50).events
        if any(e.resource["qsflow.status"] == until for e in events):
            return events
        assert time.monotonic() < deadline, [e.resource["qsflow.status"] for e in events]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def statuses_fn(client):
    return client.upload(QiskitFunction(title="status-events", entrypoint="all_statuses.py",
                                        working_dir=str(PROGRAMS / "statuses")))


@pytest.fixture(scope="module")
def done_job(statuses_fn):
    job = statuses_fn.run()
    assert job.result(cadence=1) == {"accepted": [True] * 5}
    return job


SUB_STATUSES = ["RUNNING: MAPPING", "RUNNING: OPTIMIZING_FOR_HARDWARE", "RUNNING: WAITING_FOR_QPU",
                "RUNNING: EXECUTING_QPU", "RUNNING: POST_PROCESSING"]


def test_every_status_change_is_an_event_in_order(done_job, prefect):
    job = done_job
    events = status_events(prefect, job.job_id, until="DONE")
    assert [e.resource["qsflow.status"] for e in events] == [
        "QUEUED", "INITIALIZING", "RUNNING",
        "RUNNING: MAPPING", "RUNNING: OPTIMIZING_FOR_HARDWARE", "RUNNING: WAITING_FOR_QPU",
        "RUNNING: EXECUTING_QPU", "RUNNING: POST_PROCESSING", "DONE",
    ]
    for event in events:
        assert event.resource["qsflow.job"] == job.job_id
        assert event.resource["qsflow.function"] == "status-events"
        assert event.payload == {"job_id": job.job_id, "function": "status-events",
                                 "status": event.resource["qsflow.status"]}


def test_a_stopped_job_emits_canceled(statuses_fn, prefect):
    job = statuses_fn.run()
    job.stop()
    events = status_events(prefect, job.job_id, until="CANCELED")
    assert [e.resource["qsflow.status"] for e in events][0] == "QUEUED"
    assert job.status() == "CANCELED"


def test_usage_table_and_result_summary_are_artifacts(done_job, prefect):
    import json

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.job_usage import usage_rows

    usage = done_job.resource_usage()
    assert list(usage) == ["QUEUED", "INITIALIZING", "RUNNING", *SUB_STATUSES]
    for name in SUB_STATUSES:  # the program sleeps 0.7 s in each
        assert usage[name]["WALL_TIME"] >= 0.7, usage
    deadline = time.monotonic() + EVENT_DEADLINE
    while True:  # the final-state hook writes them just after DONE
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[done_job.job_id])))
        by_key = {a.key: a for a in artifacts}
        if len(by_key) == 2:
            break
        assert time.monotonic() < deadline, list(by_key)
        time.sleep(0.5)
    table = by_key["status-events-resource-usage"]
    assert table.type == "table"
    assert json.loads(table.data) == usage_rows(usage)
    summary = by_key["status-events-result"]
    assert summary.type == "markdown"
    assert "| `accepted` | list of 5 (bool `true`) |" in summary.data
    # job.result() is unchanged: only what the program saved.
    assert done_job.result() == {"accepted": [True] * 5}


def test_a_failed_job_ends_with_an_error_event_and_its_usage_artifact(client, prefect):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    fn = client.upload(QiskitFunction(title="status-events-failing", entrypoint="fails.py",
                                      working_dir=str(PROGRAMS / "failing")))
    job = fn.run()
    assert job.wait(timeout=600) == "ERROR"
    statuses = [e.resource["qsflow.status"] for e in status_events(prefect, job.job_id, until="ERROR")]
    assert statuses == ["QUEUED", "INITIALIZING", "RUNNING", "ERROR"]
    assert list(job.resource_usage()) == ["QUEUED", "INITIALIZING", "RUNNING"]
    deadline = time.monotonic() + EVENT_DEADLINE
    while not (artifacts := prefect.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[job.job_id])))):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    keyed = [a.key for a in artifacts if a.key]  # Prefect adds an unkeyed record of the failure result
    assert keyed == ["status-events-failing-resource-usage"], [(a.key, a.type, a.data) for a in artifacts]
