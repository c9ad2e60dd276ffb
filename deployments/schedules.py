"""Schedules: run an uploaded program on a cron, interval or RRule schedule with fixed arguments.

A schedule is a Prefect deployment schedule of the program's deployment (``programs.deployment_name``)
whose ``parameters`` hold the job's arguments, encoded as the client encodes them; Prefect's scheduler
creates the flow runs (jobs) ahead of time and the worker runs them. Re-uploading the program keeps
its schedules (``programs.register``).

    from deployments import schedules
    schedules.add("transpile-remote", cron="0 * * * *", arguments={"circuits": 4})
    schedules.list_schedules("transpile-remote"); schedules.upcoming("transpile-remote")
    schedules.remove("transpile-remote", schedule_id)

Each call reaches the Prefect server at ``host`` (``http://HOST:PORT/api``), else ``QSFLOW_HOST``,
else the embedded default.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterator, Optional, Union
from uuid import UUID

from blocks.storage import QsflowStore


@dataclass
class ScheduleInfo:
    id: str
    function: str
    kind: str            # "cron", "interval" or "rrule"
    value: str           # the cron string, the interval in seconds, or the RRule text
    timezone: Optional[str]
    active: bool
    arguments: dict[str, Any]


@contextlib.contextmanager
def connect(host: Optional[str] = None, token: Optional[str] = None) -> Iterator[tuple[Any, QsflowStore, str]]:
    """A sync Prefect client, the store of the server at ``host`` (see the module doc) and the user
    ``token`` stands for there (the jobs a schedule or trigger starts are that user's)."""
    from deployments import access
    from serverless_compat import ServerlessClient

    qs_client = ServerlessClient(host=host, token=token)
    with qs_client._api() as api:
        yield api, qs_client._store, access.resolve(token, how_to_pass="token='...' to this call").user


def make_schedule(cron: Optional[str] = None, interval: Union[None, float, timedelta] = None,
                  rrule: Optional[str] = None, timezone: Optional[str] = None):
    """One Prefect schedule from exactly one of ``cron``, ``interval`` (seconds) or ``rrule``."""
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

    forms = {"cron": cron, "interval": interval, "rrule": rrule}
    given = [name for name, value in forms.items() if value]
    if len(given) != 1:
        raise ValueError("Give exactly one of cron='0 * * * *', interval=<seconds> or rrule='FREQ=DAILY;...' "
                         f"(got {given or 'none'}).")
    try:
        if cron:
            return CronSchedule(cron=cron, timezone=timezone)
        if interval:
            seconds = interval if isinstance(interval, timedelta) else timedelta(seconds=float(interval))
            if seconds.total_seconds() <= 0:
                raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
            return IntervalSchedule(interval=seconds, timezone=timezone)
        return RRuleSchedule(rrule=rrule, timezone=timezone)
    except ValueError as exc:  # pydantic names the bad field; say which form is expected
        reason = "; ".join(e["msg"] for e in exc.errors()) if hasattr(exc, "errors") else str(exc)
        raise ValueError(f"Invalid {given[0]} schedule {forms[given[0]]!r}: {reason}. "
                         "Examples: cron='0 * * * *', interval=3600, rrule='FREQ=HOURLY;INTERVAL=2'.") from None


def add(function: str, *, cron: Optional[str] = None, interval: Union[None, float, timedelta] = None,
        rrule: Optional[str] = None, timezone: Optional[str] = None,
        arguments: Optional[dict[str, Any]] = None, host: Optional[str] = None,
        token: Optional[str] = None) -> ScheduleInfo:
    """Run ``function`` (a title, ``provider/title`` for a provider function) on a schedule with ``arguments``.

    Arguments are checked against the function's schema now, as ``run()`` checks them. The jobs are
    the user's whose ``token`` is given (the local user on the embedded default): ``client.jobs()``
    lists them once they start.
    """
    from deployments import arguments_schema, programs
    from serverless_compat import serialization

    schedule = make_schedule(cron, interval, rrule, timezone)
    encoded = serialization.to_jsonable(arguments or {})
    if not isinstance(encoded, dict):
        raise ValueError("arguments must be a dict of name -> value, e.g. {'circuits': 4}.")
    with connect(host, token) as (api, store, user):
        refusal = arguments_schema.refusal(programs.read_spec(store, function).arguments_schema, encoded)
        if refusal is not None:
            raise ValueError(refusal["message"])
        deployment = programs.read_deployment(api, function)
        created = api.create_deployment_schedules(deployment.id, [(schedule, True)],
                                                  parameters={"arguments": encoded, "owner": user})
    return _info(function, created[0])


def list_schedules(function: str, host: Optional[str] = None) -> list[ScheduleInfo]:
    from deployments import programs

    with connect(host) as (api, _, _):
        deployment = programs.read_deployment(api, function)
        return [_info(function, s) for s in api.read_deployment_schedules(deployment.id)]


def remove(function: str, schedule_id: str, host: Optional[str] = None) -> None:
    """Remove one schedule of ``function``; its runs not yet started are removed too."""
    from deployments import programs

    with connect(host) as (api, _, _):
        deployment = programs.read_deployment(api, function)
        known = {str(s.id) for s in api.read_deployment_schedules(deployment.id)}
        if str(schedule_id) not in known:
            raise LookupError(f"Function {function} has no schedule {schedule_id}; its schedules: "
                              f"{sorted(known) or 'none'} (list them with `qsflow schedules {function}`).")
        api.delete_deployment_schedule(deployment.id, UUID(str(schedule_id)))


def upcoming(function: str, limit: int = 5, host: Optional[str] = None) -> list[datetime]:
    """Start times of the function's next scheduled jobs (the runs Prefect's scheduler created)."""
    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    from deployments import programs

    with connect(host) as (api, _, _):
        deployment = programs.read_deployment(api, function)
        runs = api.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=limit,
        )
    return [run.expected_start_time for run in runs]


def _info(function: str, deployment_schedule: Any) -> ScheduleInfo:
    schedule = deployment_schedule.schedule
    if hasattr(schedule, "cron"):
        kind, value = "cron", schedule.cron
    elif hasattr(schedule, "interval"):
        kind, value = "interval", str(schedule.interval.total_seconds())
    else:
        kind, value = "rrule", schedule.rrule
    return ScheduleInfo(id=str(deployment_schedule.id), function=function, kind=kind, value=value,
                        timezone=getattr(schedule, "timezone", None), active=deployment_schedule.active,
                        arguments=(deployment_schedule.parameters or {}).get("arguments", {}))
