"""The server's own record of a job's end, as ``qsflow.job.status``: automations relaying every final state.

A job can end where no qsflow process is left to say so: cancelled from the Prefect UI before a worker
picked it up; its runner killed (SIGKILL, out of memory, the machine lost) so that Prefect marks it
Crashed; or its machine lost right after Prefect recorded it Completed or Failed, before the runner's
hook posted DONE or ERROR. The Prefect server records every state whoever set it and emits
``prefect.flow-run.<state name>`` itself, labelled with the state's type. This module keeps two
automations on the server that turn such an event of a flow run in qsflow's work pools whose state is
final (whatever its name, e.g. Failed's ``TimedOut``) into the job's ``qsflow.job.status`` (DONE, ERROR,
CANCELED): a ``call-webhook`` action posting the event to the server's own ``/events`` API, through a
Webhook block.

- Failed, Crashed, Cancelled: relayed at once (reactive).
- Completed, the end of nearly every job: relayed only if the runner's DONE did not follow within
  ``DONE_GRACE_S`` seconds (proactive; the runner's DONE carries the state's type and the run's pool, as
  the state's event does, so Prefect counts it for the same run). Relaying every Completed run cost the
  server an action per job: the webhook's block read, its rendering, a POST to itself and three
  automation events, ~10% of its CPU per trivial job.

The relayed event has the same id as the one the client (``job.stop()``) or the runner's hooks emit for
the same job and status (``flows.status_events.final_event_id``), and Prefect's server keeps one event
per id (its triggers, too, act once per id): each job gets exactly one final status event, whichever
side saw the end first.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flows import status
from flows.status_events import FINAL_ID_PREFIXES, STATUS_EVENT

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

AUTOMATION_NAME = "qsflow: job ended -> qsflow.job.status"
# Completed runs: relayed only when the runner's own DONE did not follow within DONE_GRACE_S seconds.
COMPLETED_AUTOMATION_NAME = "qsflow: job Completed, no DONE -> qsflow.job.status"
DONE_GRACE_S = 10  # the least Prefect takes for a proactive trigger; its server checks them every 5 s
# The names earlier versions gave it: replaced by this one (ensure).
FORMER_NAMES = ("qsflow: job ended (Cancelled/Crashed) -> qsflow.job.status",)
WEBHOOK_BLOCK = "qsflow-status-relay"
# Prefect's final state types, as its state events label them (``prefect.state-type``).
RELAYED_STATE_TYPES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
RELAYED_AT_ONCE = ("FAILED", "CRASHED", "CANCELLED")


def _payload() -> str:
    """The Jinja template the server renders into the POST body: a list holding one event.

    Everything comes from the triggering event itself: the run's id from its resource, the function from the run's
    ``qsflow-function:`` tag (else its flow's name, for deployments made before that tag), so the server renders it
    without reading the flow run back over its own API (which a ``flow_run`` in the template would make it do)."""
    from deployments.programs import FUNCTION_TAG_PREFIX

    state_type = 'event.resource["prefect.state-type"]'
    statuses = {t: status.to_job_status(t, None) for t in RELAYED_STATE_TYPES}
    prefixes = {t: FINAL_ID_PREFIXES[s] for t, s in statuses.items()}
    job_status = "{{ " + json.dumps(statuses) + "[" + state_type + "] }}"
    prefix = "{{ " + json.dumps(prefixes) + "[" + state_type + "] }}"
    run_id = len("prefect.flow-run.")
    tag = "prefect.tag." + FUNCTION_TAG_PREFIX
    names = (
        "{%- set found = namespace(tagged=none, flow=none) -%}"
        "{%- for related in event.related -%}"
        "{%- if related.role == 'tag' and related.id.startswith('" + tag + "') -%}"
        "{%- set found.tagged = related.id[" + str(len(tag)) + ":] -%}"
        "{%- elif related.role == 'flow' -%}{%- set found.flow = related.name -%}{%- endif -%}"
        "{%- endfor -%}"
    )
    job = "{{ event.resource.id[" + str(run_id) + ":] }}"
    function = "{{ (found.tagged or found.flow) | tojson }}"
    return names + (
        '[{"id": "' + prefix + "{{ event.resource.id[" + str(run_id + 8) + ":] }}" + '", '
        '"occurred": "{{ event.occurred }}", "event": "' + STATUS_EVENT + '", '
        '"resource": {"prefect.resource.id": "prefect.flow-run.' + job + '", "qsflow.job": "' + job + '", '
        '"qsflow.function": ' + function + ', "qsflow.status": "' + job_status + '"}, '
        '"payload": {"job_id": "' + job + '", "function": ' + function + ', "status": "' + job_status + '"}}]'
    )


def ensure(client: SyncPrefectClient) -> str:
    """Create, or bring up to date, the relay automations on the server ``client`` talks to; return the id of the
    one relaying Failed, Crashed and Cancelled runs.

    The webhook posts to the URL the client uses (the embedded server: its 127.0.0.1 URL) with the
    client's credentials (``PREFECT_API_AUTH_STRING``, as set for it): so call this inside the client's
    settings context (``deployments.connection.prefect_api``). Every upload calls it, and the embedded
    server each time it starts (its port may have changed).
    """
    from prefect.blocks.webhook import Webhook
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    from deployments.api_auth import configured_headers
    from deployments.images import IMAGE_POOL
    from deployments.settings import WORK_POOL

    headers = {"Content-Type": "application/json", **configured_headers()}
    url = f"{str(client.api_url).rstrip('/')}/events"
    block_id = Webhook(method="POST", url=url, headers=headers).save(WEBHOOK_BLOCK, overwrite=True)
    # Every job runs in one of qsflow's work pools (a function's flow is named after the function).
    in_pools = {"prefect.resource.role": "work-pool", "prefect.resource.name": [WORK_POOL, IMAGE_POOL]}
    relay = [CallWebhook(block_document_id=block_id, payload=_payload())]
    at_once = AutomationCore(
        name=AUTOMATION_NAME,
        description="qsflow: emit the job's final qsflow.job.status (ERROR, CANCELED) when Prefect records its flow "
                    "run Failed, Crashed or Cancelled (deployments/status_relay.py)",
        trigger=EventTrigger(expect={"prefect.flow-run.*"}, match={"prefect.state-type": list(RELAYED_AT_ONCE)},
                             posture=Posture.Reactive, threshold=1, match_related=in_pools),
        actions=relay,
    )
    # A Completed run's runner posts DONE right after: the server relays only a DONE that did not come.
    unreported = AutomationCore(
        name=COMPLETED_AUTOMATION_NAME,
        description=f"qsflow: emit the job's qsflow.job.status DONE when Prefect recorded its flow run Completed and "
                    f"no DONE followed within {DONE_GRACE_S} s (deployments/status_relay.py)",
        trigger=EventTrigger(
            after={"prefect.flow-run.*"}, expect={STATUS_EVENT},
            # Both the state's event and the runner's DONE (flows.status_events) carry these labels and the pool.
            match={"prefect.resource.id": "prefect.flow-run.*", "prefect.state-type": "COMPLETED"},
            match_related=in_pools, for_each={"prefect.resource.id"},
            posture=Posture.Proactive, threshold=1, within=DONE_GRACE_S,
        ),
        actions=relay,
    )
    for former in FORMER_NAMES:
        for automation_ in client.read_automations_by_name(former):
            client.delete_automation(automation_.id)
    ids = [_put(client, automation) for automation in (at_once, unreported)]
    return ids[0]


def _put(client: SyncPrefectClient, automation: Any) -> str:
    """Create ``automation`` on the server, or update the one of its name (and delete any other of that name)."""
    existing = client.read_automations_by_name(automation.name)
    for extra in existing[1:]:
        client.delete_automation(extra.id)
    if existing:
        client.update_automation(existing[0].id, automation)
        return str(existing[0].id)
    return str(client.create_automation(automation))
