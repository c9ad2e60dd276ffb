"""Every status change of a job is a Prefect event ``qsflow.job.status`` (read back through Prefect's
events API); a finished job has a resource-usage table and a result summary as Prefect artifacts."""

from __future__ import annotations

import time

import pytest

from serverless_compat import QiskitFunction

from conftest import PROGRAMS, job_status_events

EVENT_DEADLINE = 60


def status_events(prefect, job_id: str, until: str) -> list:
    return job_status_events(prefect, job_id, until, EVENT_DEADLINE)


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
    # Prefect adds an unkeyed record of the failure result, often before the hook writes the usage table.
    while True:
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[job.job_id])))
        if any(a.key for a in artifacts):
            break
        assert time.monotonic() < deadline, [(a.key, a.type) for a in artifacts]
        time.sleep(0.5)
    keyed = [a.key for a in artifacts if a.key]
    assert keyed == ["status-events-failing-resource-usage"], [(a.key, a.type, a.data) for a in artifacts]


# --- ends no qsflow process reports itself: a cancel from the Prefect UI, a crash Prefect records --------------

@pytest.fixture(scope="module")
def sleepy_fn(client):
    return client.upload(QiskitFunction(title="status-events-sleepy", entrypoint="sleeps.py",
                                        working_dir=str(PROGRAMS / "sleepy")))


def _final(prefect, job_id: str):
    deadline = time.monotonic() + EVENT_DEADLINE
    while not (state := prefect.read_flow_run(job_id).state).is_final():
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    return state


def test_a_cancel_from_the_prefect_ui_emits_one_canceled(sleepy_fn, prefect, tmp_path):
    from prefect.states import Cancelling

    job = sleepy_fn.run(marker_dir=str(tmp_path))
    deadline = time.monotonic() + 300
    while not (tmp_path / "pid").exists():  # the program runs
        assert time.monotonic() < deadline, job.status()
        time.sleep(0.2)
    prefect.set_flow_run_state(job.job_id, Cancelling(), force=True)  # what the UI's "Cancel" does
    assert _final(prefect, job.job_id).type.value == "CANCELLED"
    statuses = [e.resource["qsflow.status"] for e in status_events(prefect, job.job_id, until="CANCELED")]
    assert statuses == ["QUEUED", "INITIALIZING", "RUNNING", "CANCELED"]


def test_a_queued_job_cancelled_from_the_ui_emits_canceled(sleepy_fn, prefect, tmp_path):
    from prefect.states import Cancelling

    job = sleepy_fn.run(marker_dir=str(tmp_path))
    prefect.set_flow_run_state(job.job_id, Cancelling(), force=True)
    assert _final(prefect, job.job_id).type.value == "CANCELLED"
    statuses = [e.resource["qsflow.status"] for e in status_events(prefect, job.job_id, until="CANCELED")]
    assert statuses[0] == "QUEUED" and statuses.count("CANCELED") == 1, statuses
    assert statuses[-1] == "CANCELED"


@pytest.mark.parametrize("final, expected", [
    ("Crashed", "ERROR"),  # what Prefect's server does to a job whose machine went silent (deployments.lost_jobs)
    ("Completed", "DONE"),  # the machine lost right after the runner's final state, before its hook posted DONE
    ("TimedOut", "ERROR"),  # a Failed state of another name
])
def test_a_final_state_prefect_records_without_the_runner_is_relayed(sleepy_fn, prefect, final, expected):
    """A job's end recorded with no qsflow process left to report it: the server's relay emits its final status."""
    from prefect.states import Completed, Crashed, Failed, Pending

    from deployments.programs import read_deployment

    state = {"Crashed": Crashed(message="no heartbeat"), "Completed": Completed(),
             "TimedOut": Failed(name="TimedOut", message="timed out")}[final]
    # A run claimed by a worker that is gone (Pending: no worker polls it again), then given its final state.
    run = prefect.create_flow_run_from_deployment(read_deployment(prefect, "status-events-sleepy").id,
                                                  parameters={"arguments": {}}, state=Pending())
    prefect.set_flow_run_state(run.id, state, force=True)
    assert _final(prefect, run.id).name == final
    events = status_events(prefect, str(run.id), until=expected)
    assert [e.resource["qsflow.status"] for e in events] == [expected]
    assert events[0].resource["qsflow.function"] == "status-events-sleepy"


def test_a_completed_job_whose_runner_reported_done_is_not_relayed(done_job, prefect):
    """The server relays a Completed run only when no DONE followed: its trigger, as the server holds it, opens on
    the job's Completed state event and counts the runner's DONE for the same run, so it never acts for that job
    (the test above shows it acting when no DONE comes)."""
    from datetime import datetime, timedelta, timezone

    from prefect.server.events.schemas.automations import EventTrigger
    from prefect.server.events.schemas.events import ReceivedEvent

    from conftest import flow_run_events
    from deployments import status_relay

    [automation] = prefect.read_automations_by_name(status_relay.COMPLETED_AUTOMATION_NAME)
    trigger = EventTrigger.model_validate(automation.trigger.model_dump())
    [completed] = [ReceivedEvent.model_validate(e.model_dump())
                   for e in flow_run_events(prefect, "prefect.flow-run.Completed", [done_job.job_id])]
    [done] = [ReceivedEvent.model_validate(e.model_dump()) for e in status_events(prefect, done_job.job_id, "DONE")
              if e.resource["qsflow.status"] == "DONE"]
    assert trigger.covers(completed) and trigger.starts_after(completed.event)
    assert trigger.covers(done) and trigger.expects(done.event)
    assert trigger.bucketing_key(done) == trigger.bucketing_key(completed)

    # Past the grace and the server's next proactive check (every 5 s), nothing fired for this job.
    settled = completed.occurred + timedelta(seconds=status_relay.DONE_GRACE_S + 5 + 3)
    time.sleep(max(0.0, (settled - datetime.now(timezone.utc)).total_seconds()))
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    fired = prefect.read_events(EventFilter(event=EventNameFilter(name=["prefect.automation.triggered"]),
                                            resource=EventResourceFilter(id=[f"prefect.automation.{automation.id}"])),
                                limit=50).events
    labels = [e.payload.get("triggering_labels", {}).get("prefect.resource.id") for e in fired]
    assert f"prefect.flow-run.{done_job.job_id}" not in labels, labels


@pytest.mark.parametrize("tags, expected", [
    (["qsflow", "qsflow-function:acme/fn"], "acme/fn"),  # the function's tag, as every upload now gives it
    (["qsflow"], "acme--fn"),  # a deployment made before that tag: the flow's name
])
def test_the_relay_reads_everything_from_the_event_itself(tags, expected):
    """The relay's template, rendered by Prefect's own renderer from a flow-run state event alone (the server passes
    it nothing else: no flow run is read back)."""
    import asyncio
    import json
    import uuid

    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.server.utilities.user_templates import matching_types_in_templates, render_user_template

    from deployments import status_relay

    run_id = str(uuid.uuid4())
    related = [{"prefect.resource.id": f"prefect.flow.{uuid.uuid4()}", "prefect.resource.role": "flow",
                "prefect.resource.name": "acme--fn"}]
    related += [{"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"} for tag in tags]
    event = ReceivedEvent(occurred="2026-11-26T12:00:00Z", event="prefect.flow-run.Completed",
                          resource={"prefect.resource.id": f"prefect.flow-run.{run_id}",
                                    "prefect.state-type": "COMPLETED"},
                          related=related, id=uuid.uuid4())
    template = status_relay._payload()
    assert matching_types_in_templates([template], {"flow_run", "flow", "deployment"}) == []
    [relayed] = json.loads(asyncio.run(render_user_template(template, {"event": event})))
    assert relayed["id"] == "d0e0d0e0" + run_id[8:]
    assert relayed["resource"] == {"prefect.resource.id": f"prefect.flow-run.{run_id}", "qsflow.job": run_id,
                                   "qsflow.function": expected, "qsflow.status": "DONE"}
    assert relayed["payload"] == {"job_id": run_id, "function": expected, "status": "DONE"}
