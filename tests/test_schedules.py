"""Schedules: a function runs on a cron, interval or RRule schedule with fixed arguments (Prefect
deployment schedules; Prefect's scheduler creates the runs)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from deployments import cli, schedules
from serverless_compat import QiskitFunction

from conftest import PROGRAMS

SCHEDULER_DEADLINE = 240


@pytest.fixture(scope="module")
def scheduled_fn(client):
    return client.upload(QiskitFunction(title="scheduled-echo", entrypoint="echo.py",
                                        working_dir=str(PROGRAMS / "basic")))


def test_cron_schedule_registered_with_next_run_times(client, scheduled_fn, prefect):
    added_at = datetime.now(timezone.utc)
    info = schedules.add("scheduled-echo", cron="0 * * * *", arguments={"shots": 100})
    assert (info.kind, info.value, info.active) == ("cron", "0 * * * *", True)
    assert [s.id for s in schedules.list_schedules("scheduled-echo")] == [info.id]
    deployment = prefect.read_deployment_by_name("scheduled-echo/scheduled-echo")
    [stored] = prefect.read_deployment_schedules(deployment.id)
    assert stored.schedule.cron == "0 * * * *"
    assert stored.parameters == {"arguments": {"shots": 100}, "owner": "local"}  # the jobs are local's

    deadline = time.monotonic() + SCHEDULER_DEADLINE
    while len(upcoming := schedules.upcoming("scheduled-echo", limit=3)) < 3:
        assert time.monotonic() < deadline, upcoming
        time.sleep(1)
    # The next top of the hour after the schedule was added, then every hour.
    first = (added_at + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    if datetime.now(timezone.utc) >= first:  # the hour turned while waiting: that run is no longer upcoming
        first = max(first, upcoming[0])
    assert upcoming == [first + timedelta(hours=i) for i in range(3)]
    [run, *_] = prefect.read_flow_runs(deployment_filter=_by_id(deployment.id), limit=1)
    assert run.parameters["arguments"] == {"shots": 100}
    assert run.parameters["program"] == "scheduled-echo"

    # Uploading a new version keeps the schedule.
    client.upload(QiskitFunction(title="scheduled-echo", entrypoint="echo.py", working_dir=str(PROGRAMS / "basic")))
    assert [s.id for s in schedules.list_schedules("scheduled-echo")] != []
    assert [(s.kind, s.value, s.arguments) for s in schedules.list_schedules("scheduled-echo")] == [
        ("cron", "0 * * * *", {"shots": 100})]

    for s in schedules.list_schedules("scheduled-echo"):
        schedules.remove("scheduled-echo", s.id)
    assert schedules.list_schedules("scheduled-echo") == []


def _by_id(deployment_id):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))


def test_interval_and_rrule_schedules_and_the_cli(scheduled_fn, tmp_path, capsys):
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"backend": "fake_kyiv"}))
    assert cli.main(["schedule", "scheduled-echo", "--rrule", "FREQ=DAILY;BYHOUR=6;BYMINUTE=0",
                     "--args", str(args)]) == 0
    added = json.loads(capsys.readouterr().out)
    assert (added["kind"], added["arguments"]) == ("rrule", {"backend": "fake_kyiv"})
    assert added["value"].endswith("FREQ=DAILY;BYHOUR=6;BYMINUTE=0")  # Prefect adds a DTSTART line
    interval = schedules.add("scheduled-echo", interval=3600)
    assert (interval.kind, interval.value) == ("interval", "3600.0")

    assert cli.main(["schedules", "scheduled-echo"]) == 0
    listed = json.loads(capsys.readouterr().out)["schedules"]
    assert sorted(s["kind"] for s in listed) == ["interval", "rrule"]

    assert cli.main(["unschedule", "scheduled-echo", added["id"]]) == 0
    assert [s.kind for s in schedules.list_schedules("scheduled-echo")] == ["interval"]
    schedules.remove("scheduled-echo", interval.id)


def test_bad_schedules_are_refused_naming_the_fix(scheduled_fn, tmp_path, capsys):
    with pytest.raises(ValueError, match="Invalid cron schedule 'every hour'.*Examples: cron='0 \\* \\* \\* \\*'"):
        schedules.add("scheduled-echo", cron="every hour")
    with pytest.raises(ValueError, match="exactly one of"):
        schedules.add("scheduled-echo", cron="0 * * * *", interval=60)
    with pytest.raises(LookupError, match="doesn't exist"):
        schedules.add("no-such-function", cron="0 * * * *")
    with pytest.raises(LookupError, match="has no schedule"):
        schedules.remove("scheduled-echo", "00000000-0000-0000-0000-000000000000")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli.main(["schedule", "scheduled-echo", "--cron", "0 * * * *", "--args", str(bad)]) == 2
    assert "Give a JSON file" in capsys.readouterr().err
    assert schedules.list_schedules("scheduled-echo") == []
