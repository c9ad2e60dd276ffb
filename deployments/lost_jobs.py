"""Jobs whose machine died: Prefect's flow-run heartbeats and an automation that ends or retries them.

A Prefect process worker starts each flow run in a session of its own, so a worker killed alone leaves its jobs
running to the end (they report to the API themselves). When the machine goes (worker, flow-run processes and
programs all killed), nothing reports any more and the jobs would stay RUNNING for ever. Prefect's answer
(docs: "Detect zombie flows") is used as is: flow-run processes send a heartbeat event every
``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (set in the workers' environment, :data:`HEARTBEAT_ENV`) and an
automation changes the state of a run that went silent for ``within`` seconds:

- ``policy="crash"`` (the default): the run becomes Crashed, i.e. the job ends ERROR;
- ``policy="retry"``: the run is scheduled again (``AwaitingRetry``) and another worker runs it from the start.
  Only safe for programs that may run twice: a silent run is presumed dead, not known dead.

A run that a worker claimed (Pending) but never started is covered too, and so is one whose machine died after the
run entered Running but before its first heartbeat reached the server: Running starts the wait as a heartbeat
does (it used to only end the wait that Pending began, and such a run was never ended; seen once in a cluster
load test). A run's final state event ends the wait;
under ``crash`` Prefect refuses to change a run already final, ``retry`` forces the state (it must, to leave
Running), so there a final event arriving later than ``within`` would let a finished run be run again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

AUTOMATION_NAME = "qsflow: end or retry jobs whose process went silent"
HEARTBEAT_SECONDS = 30  # Prefect's minimum
HEARTBEAT_ENV = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}
POLICIES = ("crash", "retry")


def ensure_automation(client: Any, policy: str = "crash", within: float = 90.0) -> str:
    """Create (or replace) the automation on the server ``client`` talks to; return its id."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    if policy not in POLICIES:
        raise ValueError(f"policy={policy!r}: use 'crash' (jobs end ERROR) or 'retry' (jobs run again).")
    if within <= HEARTBEAT_SECONDS:
        raise ValueError(f"within={within} must exceed the heartbeat interval ({HEARTBEAT_SECONDS} s); 90 is safe.")
    if policy == "crash":
        action = ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"The job's process stopped reporting for {within:.0f} s "
                                            "(its machine or worker died).")
    else:
        action = ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry", force=True,
                                    message=f"The job's process stopped reporting for {within:.0f} s; "
                                            "it runs again on another worker.")
    automation = AutomationCore(
        name=AUTOMATION_NAME,
        description=__doc__.split("\n\n")[0],
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat", "prefect.flow-run.Pending", "prefect.flow-run.Running"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Running", "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed", "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed",
                    "prefect.flow-run.Cancelling"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within),
        ),
        actions=[action],
    )
    for existing in client.read_automations_by_name(AUTOMATION_NAME):
        client.delete_automation(existing.id)
    return str(client.create_automation(automation))
