"""The one status map: Prefect flow-run states -> Qiskit Serverless job statuses."""

import pytest

from flows.status import running_state_name, to_job_status
from serverless_compat import Job


@pytest.mark.parametrize(
    "state_type, name, expected",
    [
        (None, None, "QUEUED"),
        ("SCHEDULED", "Scheduled", "QUEUED"),
        ("SCHEDULED", "Late", "QUEUED"),
        ("PENDING", "Pending", "QUEUED"),
        ("RUNNING", "Running", "INITIALIZING"),
        ("RUNNING", "INITIALIZING", "INITIALIZING"),
        ("RUNNING", "RUNNING", "RUNNING"),
        ("RUNNING", "RUNNING: MAPPING", "RUNNING: MAPPING"),
        ("RUNNING", "RUNNING: WAITING_FOR_QPU", "RUNNING: WAITING_FOR_QPU"),
        ("COMPLETED", "Completed", "DONE"),
        ("FAILED", "Failed", "ERROR"),
        ("CRASHED", "Crashed", "ERROR"),
        ("CANCELLING", "Cancelling", "CANCELED"),
        ("CANCELLED", "Cancelled", "CANCELED"),
    ],
)
def test_state_to_status(state_type, name, expected):
    assert to_job_status(state_type, name) == expected


def test_prefect_state_type_enum_is_accepted():
    from prefect.client.schemas.objects import StateType

    assert to_job_status(StateType.COMPLETED, "Completed") == "DONE"
    assert to_job_status(StateType.RUNNING, "RUNNING: MAPPING") == "RUNNING: MAPPING"


@pytest.mark.parametrize(
    "constant, name",
    [
        (Job.MAPPING, "RUNNING: MAPPING"),
        (Job.OPTIMIZING_HARDWARE, "RUNNING: OPTIMIZING_FOR_HARDWARE"),
        (Job.WAITING_QPU, "RUNNING: WAITING_FOR_QPU"),
        (Job.EXECUTING_QPU, "RUNNING: EXECUTING_QPU"),
        (Job.POST_PROCESSING, "RUNNING: POST_PROCESSING"),
        ("RUNNING: WAITING_FOR_QPU", "RUNNING: WAITING_FOR_QPU"),
        ("OPTIMIZING_FOR_HARDWARE", "RUNNING: OPTIMIZING_FOR_HARDWARE"),
    ],
)
def test_sub_status_names(constant, name):
    assert running_state_name(constant) == name


def test_unknown_sub_status_names_the_accepted_ones():
    with pytest.raises(ValueError, match="Job.MAPPING, Job.OPTIMIZING_HARDWARE"):
        running_state_name("COFFEE_BREAK")
