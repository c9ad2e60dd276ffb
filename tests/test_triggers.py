"""Event triggers (Prefect automations): an upload, a job's DONE or any event starts a job."""

from __future__ import annotations

import time

import pytest

from deployments import triggers
from serverless_compat import QiskitFunction

from conftest import PROGRAMS, make_tar
from test_job_events_and_artifacts import status_events

TRIGGER_DEADLINE = 180


def _upload_echo(client, title: str):
    return client.upload(QiskitFunction(title=title, entrypoint="echo.py", working_dir=str(PROGRAMS / "basic")))


def _runs_of(prefect, title: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deployment = prefect.read_deployment_by_name(f"{title}/{title}")
    return prefect.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


def _first_run(prefect, title: str):
    deadline = time.monotonic() + TRIGGER_DEADLINE
    while not (runs := _runs_of(prefect, title)):
        assert time.monotonic() < deadline, f"no run of {title} within {TRIGGER_DEADLINE} s"
        time.sleep(1)
    return runs


def test_an_upload_starts_the_triggered_program(client, prefect, tmp_path):
    watched = _upload_echo(client, "upload-watched")
    _upload_echo(client, "on-upload")
    trigger = triggers.on_file_upload("on-upload", watched_function="upload-watched", name_pattern="batch-*.tar",
                                      arguments={"shots": 7})
    assert [t.id for t in triggers.list_triggers("on-upload")] == [trigger.id]
    assert trigger.events == ["qsflow.file.uploaded"]
    client.file_upload(str(make_tar(tmp_path / "other.tar")), watched)       # name does not match
    client.file_upload(str(make_tar(tmp_path / "batch-1.tar")), "on-upload")  # function does not match
    client.file_upload(str(make_tar(tmp_path / "batch-1.tar")), watched)

    [run] = _first_run(prefect, "on-upload")
    job = client.job(str(run.id))
    result = job.result(cadence=1)
    assert job.status() == "DONE"
    assert result["arguments"] == {"shots": 7, "file": "batch-1.tar", "uploaded_by": "local"}
    assert len(_runs_of(prefect, "on-upload")) == 1  # the two other uploads started nothing
    triggers.remove("on-upload", trigger.id)
    assert triggers.list_triggers("on-upload") == []


def test_a_jobs_done_starts_the_next_program_with_its_id(client, prefect):
    first = _upload_echo(client, "chain-first")
    _upload_echo(client, "chain-second")
    triggers.after_job("chain-second", after="chain-first", arguments={"step": 2})
    job = first.run(step=1)
    assert job.result(cadence=1)["arguments"] == {"step": 1}

    [run] = _first_run(prefect, "chain-second")
    second = client.job(str(run.id))
    assert second.result(cadence=1)["arguments"] == {"step": 2, "job_id": job.job_id}
    # A run created by Prefect, not the client, still has its whole status story as events.
    events = status_events(prefect, second.job_id, until="DONE")
    assert [e.resource["qsflow.status"] for e in events] == ["QUEUED", "INITIALIZING", "RUNNING", "DONE"]
    # ... and is one of the user's jobs, as if they had run it themselves.
    assert second.job_id in [j.job_id for j in client.jobs(function=client.function("chain-second"))]


def test_any_custom_event_starts_a_run_with_templated_arguments(client, prefect):
    from prefect.events import emit_event

    from deployments.connection import prefect_api

    _upload_echo(client, "on-sensor")
    trigger = triggers.on_event("on-sensor", "lab.sensor.reading", match={"prefect.resource.id": "lab.sensor.*"},
                                arguments={"reading": "{{ event.payload.value }}", "fixed": "yes"})
    assert (trigger.events, trigger.match) == (["lab.sensor.reading"], {"prefect.resource.id": "lab.sensor.*"})
    with prefect_api(client.host):
        emit_event("lab.sensor.reading", resource={"prefect.resource.id": "lab.other.3"}, payload={"value": 1})
        emit_event("lab.sensor.reading", resource={"prefect.resource.id": "lab.sensor.7"}, payload={"value": 42})
    [run] = _first_run(prefect, "on-sensor")
    client.job(str(run.id)).stop()  # what it was started with is the point, not running it
    assert run.parameters["arguments"] == {"reading": 42, "fixed": "yes"}


def test_a_triggered_job_belongs_to_the_user_who_made_the_trigger(client, prefect):
    from prefect.blocks.system import Secret
    from prefect.events import emit_event

    from deployments.access import USERS_BLOCK, token_key
    from deployments.connection import prefect_api
    from serverless_compat import ServerlessClient
    from test_data_files import _delete_users_block

    _upload_echo(client, "on-alice-event")
    with prefect_api(client.host):
        Secret(value={token_key("alice-token"): {"user": "alice", "providers": []},
                      token_key("bob-token"): {"user": "bob", "providers": []}}).save(USERS_BLOCK)
    try:
        triggers.on_event("on-alice-event", "lab.alice.ping", arguments={"n": 1}, token="alice-token")
        with prefect_api(client.host):
            emit_event("lab.alice.ping", resource={"prefect.resource.id": "lab.alice"})
        [run] = _first_run(prefect, "on-alice-event")
        alice = ServerlessClient(host=client.host, token="alice-token")
        job = alice.job(str(run.id))
        assert job.result(cadence=1)["arguments"] == {"n": 1}
        assert [j.job_id for j in alice.jobs()] == [job.job_id]
        assert ServerlessClient(host=client.host, token="bob-token").jobs() == []
        with pytest.raises(PermissionError, match="pass your token, token='...' to this call"):
            triggers.on_event("on-alice-event", "lab.alice.ping")  # a shared server needs to know who asks
    finally:
        _delete_users_block(client.host)


def test_bad_triggers_are_refused(client):
    with pytest.raises(LookupError, match="doesn't exist"):
        triggers.on_file_upload("no-such-function")
    with pytest.raises(ValueError, match="Unknown job status 'FINISHED'"):
        triggers.after_job("chain-second", after="chain-first", status="FINISHED")
    with pytest.raises(LookupError, match="has no trigger"):
        triggers.remove("chain-second", "00000000-0000-0000-0000-000000000000")
