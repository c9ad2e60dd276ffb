"""Event triggers: run an uploaded program when an event happens (Prefect automations).

Each trigger is Prefect's ``DeploymentEventTrigger`` turned into an automation owned by the program's
deployment: when a matching event arrives, Prefect's server runs the deployment (a job) with the
trigger's fixed arguments plus what the event tells:

- ``on_file_upload``: a data file was uploaded (``qsflow.file.uploaded``), optionally only for one
  function's files and names matching a glob (``"batch-*.tar"``); the job gets ``file`` (the uploaded
  name) and ``uploaded_by`` (the user).
- ``after_job``: a job of another function reached a status (``qsflow.job.status``, ``DONE`` by
  default); the job gets ``job_id`` (the finished job's id), so programs chain into a DAG.
- ``on_event``: any Prefect event, matched on its name and resource labels; arguments may hold
  Prefect templates such as ``"{{ event.payload.x }}"``.

Matching is Prefect's: label values are glob patterns (``fnmatch``; a leading ``!`` negates). Triggered jobs
are Prefect flow runs of the deployment; they run for the user whose ``token`` made the trigger (the
local user on the embedded default), are listed by that user's ``client.jobs()`` once they start, and
emit their ``qsflow.job.status`` QUEUED when the runner starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from deployments.schedules import connect

FILE_UPLOADED = "qsflow.file.uploaded"
JOB_STATUS = "qsflow.job.status"


@dataclass
class TriggerInfo:
    id: str
    function: str
    name: str
    events: list[str]
    match: dict[str, Any]
    arguments: dict[str, Any]
    enabled: bool


def on_event(function: str, event: str, match: Optional[dict[str, str]] = None,
             arguments: Optional[dict[str, Any]] = None, name: Optional[str] = None,
             host: Optional[str] = None, token: Optional[str] = None) -> TriggerInfo:
    """Run ``function`` each time event ``event`` (a name, or a prefix ending in ``*``) happens with
    resource labels matching ``match`` (globs, e.g. ``{"prefect.resource.id": "my.sensor.*"}``)."""
    from prefect.events import DeploymentEventTrigger

    from deployments import programs
    from serverless_compat import serialization

    if not isinstance(event, str) or not event:
        raise ValueError("event must name a Prefect event, e.g. 'qsflow.file.uploaded' or 'my.app.*'.")
    encoded = serialization.to_jsonable(arguments or {})
    if not isinstance(encoded, dict):
        raise ValueError("arguments must be a dict of name -> value, e.g. {'shots': 100}.")
    with connect(host, token) as (api, _, user):
        deployment = programs.read_deployment(api, function)
        trigger = DeploymentEventTrigger(
            name=name or f"{function}: on {event}",
            description=f"qsflow: run {function} when {event} happens",
            expect={event}, match=match or {}, parameters={"arguments": encoded, "owner": user},
        )
        trigger.set_deployment_id(deployment.id)
        automation_id = api.create_automation(trigger.as_automation())
        return _info(function, api.read_automation(automation_id))


def on_file_upload(function: str, *, watched_function: Optional[str] = None, name_pattern: Optional[str] = None,
                   arguments: Optional[dict[str, Any]] = None, host: Optional[str] = None,
                   token: Optional[str] = None) -> TriggerInfo:
    """Run ``function`` when a data file is uploaded: of ``watched_function`` (its title, or
    ``provider/title``; any if None), named like the glob ``name_pattern`` (``"batch-*.tar"``)."""
    match = {}
    if watched_function is not None:
        match["qsflow.function"] = watched_function
    if name_pattern is not None:
        match["prefect.resource.name"] = name_pattern
    fixed = dict(arguments or {})
    fixed.update(file="{{ event.resource['prefect.resource.name'] }}",
                 uploaded_by="{{ event.resource['qsflow.user'] }}")
    return on_event(function, FILE_UPLOADED, match, fixed,
                    name=f"{function}: on upload of {name_pattern or '*'} ({watched_function or 'any function'})",
                    host=host, token=token)


def after_job(function: str, *, after: str, status: str = "DONE", arguments: Optional[dict[str, Any]] = None,
              host: Optional[str] = None, token: Optional[str] = None) -> TriggerInfo:
    """Run ``function`` each time a job of function ``after`` reaches ``status``; it gets ``job_id``."""
    from flows.status import SUB_STATUSES, TERMINAL

    known = {"QUEUED", "INITIALIZING", "RUNNING", *SUB_STATUSES.values(), *TERMINAL}
    if status not in known:
        raise ValueError(f"Unknown job status {status!r}; pass one of {sorted(known)}.")
    fixed = dict(arguments or {})
    fixed["job_id"] = "{{ event.resource['qsflow.job'] }}"
    return on_event(function, JOB_STATUS, {"qsflow.function": after, "qsflow.status": status}, fixed,
                    name=f"{function}: after {after} {status}", host=host, token=token)


def list_triggers(function: str, host: Optional[str] = None) -> list[TriggerInfo]:
    from deployments import programs

    with connect(host) as (api, _, _):
        deployment = programs.read_deployment(api, function)
        owner = f"prefect.deployment.{deployment.id}"
        actions = lambda a: [getattr(x, "deployment_id", None) for x in a.actions]  # noqa: E731
        return [_info(function, a) for a in api.read_automations()
                if a.owner_resource == owner or deployment.id in actions(a)]


def remove(function: str, trigger_id: str, host: Optional[str] = None) -> None:
    known = {t.id for t in list_triggers(function, host)}
    if str(trigger_id) not in known:
        raise LookupError(f"Function {function} has no trigger {trigger_id}; its triggers: {sorted(known) or 'none'}.")
    with connect(host) as (api, _, _):
        api.delete_automation(trigger_id)


def _info(function: str, automation: Any) -> TriggerInfo:
    trigger = automation.trigger
    match = trigger.match.model_dump() if hasattr(trigger.match, "model_dump") else dict(trigger.match)
    parameters = automation.actions[0].parameters or {}
    return TriggerInfo(id=str(automation.id), function=function, name=automation.name,
                       events=sorted(trigger.expect), match=dict(match), arguments=parameters.get("arguments", {}),
                       enabled=automation.enabled)
