"""The one map between Prefect flow-run states and Qiskit Serverless job statuses.

Qiskit Serverless reports a job as one of a few fixed strings, with detailed
"RUNNING: <sub-status>" strings set by the program through ``update_status``.
qsflow stores those detailed statuses as *names* of Prefect ``Running`` states, so
the Prefect UI shows them on the flow-run badge and the state history keeps them.
"""

from __future__ import annotations

from typing import Optional

QUEUED = "QUEUED"
INITIALIZING = "INITIALIZING"
RUNNING = "RUNNING"
DONE = "DONE"
ERROR = "ERROR"
CANCELED = "CANCELED"

# Sub-statuses a program may set: Qiskit Serverless's ``Job`` constant -> the job status string.
SUB_STATUSES = {
    "MAPPING": "RUNNING: MAPPING",
    "OPTIMIZING_HARDWARE": "RUNNING: OPTIMIZING_FOR_HARDWARE",
    "WAITING_QPU": "RUNNING: WAITING_FOR_QPU",
    "EXECUTING_QPU": "RUNNING: EXECUTING_QPU",
    "POST_PROCESSING": "RUNNING: POST_PROCESSING",
}

TERMINAL = frozenset({DONE, ERROR, CANCELED})

# Prefect state types (``prefect.client.schemas.objects.StateType`` values), kept as plain strings so
# that programs can import this module without importing Prefect.
_BY_TYPE = {
    "SCHEDULED": QUEUED,
    "PENDING": QUEUED,
    "PAUSED": QUEUED,
    "COMPLETED": DONE,
    "FAILED": ERROR,
    "CRASHED": ERROR,
    "CANCELLED": CANCELED,
    "CANCELLING": CANCELED,
}


def running_state_name(sub_status: Optional[str] = None) -> str:
    """The Prefect ``Running`` state name for a running job, optionally in a sub-status.

    ``sub_status`` is a ``Job`` constant (``"MAPPING"``, ``"WAITING_QPU"`` ...) or a status string
    (``"RUNNING: WAITING_FOR_QPU"``, ``"WAITING_FOR_QPU"``). Raises ``ValueError`` naming the
    accepted values for anything else.
    """
    if sub_status is None:
        return RUNNING
    if sub_status in SUB_STATUSES:
        return SUB_STATUSES[sub_status]
    for name in SUB_STATUSES.values():
        if sub_status in (name, name.removeprefix(f"{RUNNING}: ")):
            return name
    accepted = ", ".join(f"Job.{constant}" for constant in SUB_STATUSES)
    raise ValueError(f"Unknown job sub-status {sub_status!r}. Pass one of {accepted}.")


def to_job_status(state_type: Optional[str], state_name: Optional[str]) -> str:
    """Qiskit Serverless's status string for a flow run in state ``state_type``/``state_name``.

    A ``Running`` state named ``RUNNING`` or ``RUNNING: <sub-status>`` is the program running;
    any other ``Running`` state (Prefect's own ``Running`` at engine start, ``INITIALIZING``
    while the runner fetches the program and prepares its environment) is INITIALIZING.
    """
    if state_type is None:
        return QUEUED
    state_type = getattr(state_type, "value", state_type)
    if state_type == "RUNNING":
        name = state_name or ""
        if name == RUNNING or name.startswith(f"{RUNNING}: "):
            return name
        return INITIALIZING
    return _BY_TYPE[state_type]


# Qiskit Serverless's gateway-side names (``Job.SUCCEEDED`` ...) that its client also accepts as
# a ``status`` filter, mapped to the status strings above.
_GATEWAY_NAMES = {"PENDING": INITIALIZING, "SUCCEEDED": DONE, "FAILED": ERROR, "STOPPED": CANCELED}


def state_filter(job_status: str) -> tuple[list[str], Optional[list[str]]]:
    """The Prefect flow-run states that read as ``job_status``: (state types, state names or None).

    ``RUNNING`` covers every ``RUNNING: <sub-status>``; ``RUNNING: MAPPING`` only that one. Also
    takes the gateway's names (``SUCCEEDED``, ``FAILED``, ``STOPPED``, ``PENDING``) and ``Job``
    constants (``Job.MAPPING``). Raises ``ValueError`` naming the accepted values for anything else.
    """
    wanted = _GATEWAY_NAMES.get(job_status, job_status)
    if wanted in SUB_STATUSES:
        wanted = SUB_STATUSES[wanted]
    if wanted == INITIALIZING:
        return ["RUNNING"], ["Running", INITIALIZING]
    if wanted == RUNNING:
        return ["RUNNING"], [RUNNING, *SUB_STATUSES.values()]
    if wanted in SUB_STATUSES.values():
        return ["RUNNING"], [wanted]
    types = sorted(t for t, s in _BY_TYPE.items() if s == wanted)
    if not types:
        accepted = [QUEUED, INITIALIZING, RUNNING, *SUB_STATUSES.values(), DONE, ERROR, CANCELED]
        raise ValueError(f"Unknown job status {job_status!r} to filter on. Pass one of {accepted}.")
    return types, None
