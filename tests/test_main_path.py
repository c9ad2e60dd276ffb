"""The main path, end to end on a real embedded Prefect server and worker.

Upload a program, run it as a job (a flow run), follow its statuses, read its result and logs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from qiskit import QuantumCircuit

from flows.status import to_job_status
from serverless_compat import QiskitFunction, QiskitServerlessException

from conftest import PROGRAMS, bell

JOB_TIMEOUT = 240


def _history(prefect, job) -> list[str]:
    """The job's statuses as recorded in the flow run's state history, repeats folded."""
    statuses = [to_job_status(s.type, s.name) for s in prefect.read_flow_run_states(job.job_id)]
    return [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]


@pytest.fixture(scope="module")
def echo(client):
    return client.upload(QiskitFunction(
        title="echo", entrypoint="echo.py", working_dir=str(PROGRAMS / "basic"), env_vars={"X": "1"},
    ))


def test_run_round_trips_a_quantum_circuit_and_sees_env_vars(echo):
    circuit = bell()
    job = echo.run(circuit=circuit, circuit_list=[circuit] * 4, optimization_level=2, backend="fake_sherbrooke")
    assert job.status() in {"QUEUED", "INITIALIZING", "RUNNING"}
    result = job.result(cadence=1)
    assert job.status() == "DONE"
    assert isinstance(result["circuit"], QuantumCircuit)
    assert result["circuit"] == circuit
    assert result["depth"] == circuit.depth()
    assert result["arguments"]["circuit_list"] == [circuit] * 4
    assert result["arguments"]["optimization_level"] == 2
    assert result["env_x"] == "1"
    # The whole working_dir travels with the program.
    assert "helper_module.py" in result["cwd_files"]
    logs = job.logs()
    assert "got ['backend', 'circuit', 'circuit_list', 'optimization_level']" in logs
    assert "saving result" in logs
    # Prefect's own engine messages stay out of the user's logs.
    assert "Finished in state" not in logs


def test_no_arguments_gives_empty_dict(echo):
    job = echo.run()
    assert job.result(cadence=1)["arguments"] == {}


def test_statuses_in_order(client, prefect):
    fn = client.upload(QiskitFunction(title="statuses", entrypoint="all_statuses.py",
                                      working_dir=str(PROGRAMS / "statuses")))
    job = fn.run()
    seen: list[str] = []
    deadline = time.monotonic() + JOB_TIMEOUT
    while not seen or seen[-1] not in {"DONE", "ERROR", "CANCELED"}:
        assert time.monotonic() < deadline, f"job stuck; seen {seen}"
        current = job.status()
        if not seen or seen[-1] != current:
            seen.append(current)
        time.sleep(0.1)
    expected = [
        "QUEUED", "INITIALIZING", "RUNNING",
        "RUNNING: MAPPING", "RUNNING: OPTIMIZING_FOR_HARDWARE", "RUNNING: WAITING_FOR_QPU",
        "RUNNING: EXECUTING_QPU", "RUNNING: POST_PROCESSING", "DONE",
    ]
    # Every status the server recorded, in order, exactly.
    assert _history(prefect, job) == expected
    # What polling saw is the same sequence, possibly with short states missed.
    positions = [expected.index(s) for s in seen]
    assert positions == sorted(positions) and seen[-1] == "DONE", seen
    assert job.result() == {"accepted": [True] * 5}
    # The Prefect UI's badge reads the Qiskit Serverless string.
    names = [s.name for s in prefect.read_flow_run_states(job.job_id)]
    assert "RUNNING: WAITING_FOR_QPU" in names


def test_failing_program_is_error_with_traceback(client):
    fn = client.upload(QiskitFunction(title="fails", entrypoint="fails.py",
                                      working_dir=str(PROGRAMS / "failing")))
    job = fn.run(value=5)
    assert job.wait(timeout=JOB_TIMEOUT) == "ERROR"
    logs = job.logs()
    assert "starting a program that fails" in logs
    assert "Traceback (most recent call last)" in logs
    assert "ValueError: cannot compute with 5" in logs
    with pytest.raises(QiskitServerlessException, match="ValueError: cannot compute with 5"):
        job.result()
    assert "ValueError: cannot compute with 5" in job.error_message()
    assert job.in_terminal_state()


def test_stop_cancels_and_kills_the_program(client, prefect, tmp_path):
    fn = client.upload(QiskitFunction(title="sleepy", entrypoint="sleeps.py",
                                      working_dir=str(PROGRAMS / "sleepy")))
    job = fn.run(marker_dir=str(tmp_path))
    deadline = time.monotonic() + JOB_TIMEOUT
    while not (tmp_path / "pid").exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    pid = int((tmp_path / "pid").read_text())
    job.stop()
    assert job.status() == "CANCELED"
    # Prefect finishes the cancellation: the flow run ends Cancelled and the program is gone.
    deadline = time.monotonic() + 60
    while prefect.read_flow_run(job.job_id).state.type.value != "CANCELLED":
        assert time.monotonic() < deadline, prefect.read_flow_run(job.job_id).state
        time.sleep(0.2)
    deadline = time.monotonic() + 30
    while _alive(pid):
        assert time.monotonic() < deadline, "the program survived job.stop()"
        time.sleep(0.2)
    assert not (tmp_path / "finished").exists()
    assert job.result() is None
    assert "has already stopped" in job.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status_file = Path(f"/proc/{pid}/status")
    return status_file.exists() and "zombie" not in status_file.read_text()


def test_reupload_makes_a_new_version_and_keeps_the_old(client, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    program = source / "main.py"
    program.write_text("from qiskit_serverless import save_result\nsave_result({'v': 1})\n")
    first = client.upload(QiskitFunction(title="versioned", entrypoint="main.py", working_dir=str(source)))
    program.write_text("from qiskit_serverless import save_result\nsave_result({'v': 2})\n")
    second = client.upload(QiskitFunction(title="versioned", entrypoint="main.py", working_dir=str(source)))
    assert (first.version, second.version) == ("1", "2")
    assert [f.version for f in client.function_versions("versioned")] == ["1", "2"]
    assert client.function("versioned").version == "2"
    assert second.run().result(cadence=1) == {"v": 2}


def test_listing_functions_and_jobs(client, echo):
    titles = [f.title for f in client.functions()]
    assert "echo" in titles
    assert client.function("echo").entrypoint == "echo.py"
    job = echo.run(tag="listed")
    listed = [j.job_id for j in client.jobs()]
    assert job.job_id in listed
    assert job.job_id in [j.job_id for j in echo.jobs(limit=50)]
    assert client.job(job.job_id).job_id == job.job_id
    assert client.job("00000000-0000-0000-0000-000000000000") is None
    job.result(cadence=1)
