"""Every status change of a job is a Prefect event ``qsflow.job.status``, read back through Prefect's events API."""

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


def test_every_status_change_is_an_event_in_order(statuses_fn, prefect):
    job = statuses_fn.run()
    assert job.result(cadence=1) == {"accepted": [True] * 5}
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
