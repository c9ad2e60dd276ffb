"""Programs pinning a real qiskit-serverless release run unchanged through qsflow (every generation's contract).

One small program (tests/programs/pinned_release: arguments with a QuantumCircuit, update_status
where the release has it, save_result) runs with the real package from PyPI pinned at:

- 0.22.0 (the seed's): arguments from ``arguments.serverless``, status and result through the job's
  gateway endpoints; then again without a gateway token, so the result comes back as the stdout
  marker, from the cached environment;
- 0.37.0: arguments from ``ARGUMENTS_PATH``, result in ``RESULTS_PATH``, status through the gateway;
- under ``-m slow`` (each installs a ~1 GB environment with Ray): 0.16.3 (arguments in
  ``ENV_JOB_ARGUMENTS``; the release has no ``update_status``) and 0.28.0 (arguments under
  ``DATA_PATH/arguments/``). Run them with ``.venv/bin/python -m pytest -m slow tests/test_pinned_releases.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from qiskit import QuantumCircuit

from flows.environments import environment_key
from flows.status import to_job_status
from serverless_compat import QiskitFunction

from conftest import PROGRAMS

JOB_TIMEOUT = 900  # includes installing the release's environment on a busy machine
MARKER = "Saved Result"


def _history(prefect, job) -> list[str]:
    statuses = [to_job_status(s.type, s.name) for s in prefect.read_flow_run_states(job.job_id)]
    return [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]


def _circuit() -> QuantumCircuit:
    circuit = QuantumCircuit(3, name="ghz")
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.cx(1, 2)
    circuit.rz(0.25, 2)
    circuit.measure_all()
    return circuit


def _function(client, release: str):
    return client.upload(QiskitFunction(
        title=f"pinned-{release.replace('.', '-')}", entrypoint="program.py",
        working_dir=str(PROGRAMS / "pinned_release"), dependencies=[f"qiskit-serverless=={release}"],
    ))


def _run(function, release: str, qsflow_home: Path, **arguments):
    circuit = _circuit()
    job = function.run(circuit=circuit, label=f"run of {release}", **arguments)
    assert job.wait(timeout=JOB_TIMEOUT) == "DONE", job.logs()
    result = job.result()
    module = result.pop("module")
    assert module.startswith(str(qsflow_home / "envs")), module  # the real package, not the shim
    return job, result, circuit


def _saved(release: str, circuit: QuantumCircuit, status_updated) -> dict:
    return {"version": release, "circuit": circuit, "depth": circuit.depth(),
            "status_updated": status_updated, "label": f"run of {release}"}


def _env_dir(qsflow_home: Path, release: str) -> Path:
    return qsflow_home / "envs" / environment_key([f"qiskit-serverless=={release}"])


def _assert_mapping_reached(prefect, job) -> None:
    history = _history(prefect, job)
    assert history[-3:] == ["RUNNING", "RUNNING: MAPPING", "DONE"], history


def test_release_0_22_through_the_gateway_then_the_stdout_marker_from_the_cached_environment(
        client, prefect, qsflow_home):
    function = _function(client, "0.22.0")
    job, result, circuit = _run(function, "0.22.0", qsflow_home)
    assert result == _saved("0.22.0", circuit, True)
    _assert_mapping_reached(prefect, job)
    logs = job.logs()
    assert "program ran with qiskit-serverless 0.22.0" in logs
    assert "Installing dependencies into a new environment" in logs
    assert MARKER not in logs

    ready = _env_dir(qsflow_home, "0.22.0") / ".qsflow-ready"
    installed_at = ready.stat().st_mtime_ns
    again, result, circuit = _run(function, "0.22.0", qsflow_home, without_gateway=True)
    assert result == _saved("0.22.0", circuit, True)
    _assert_mapping_reached(prefect, again)
    logs = again.logs()
    assert "program ran with qiskit-serverless 0.22.0" in logs
    assert "Results will be saved as logs" in logs  # the release took its stdout-marker path
    assert MARKER not in logs
    assert "Installing dependencies" not in logs  # the environment was reused, not reinstalled
    assert ready.stat().st_mtime_ns == installed_at


def test_release_0_37(client, prefect, qsflow_home):
    job, result, circuit = _run(_function(client, "0.37.0"), "0.37.0", qsflow_home)
    assert result == _saved("0.37.0", circuit, True)
    _assert_mapping_reached(prefect, job)
    assert MARKER not in job.logs()


@pytest.mark.slow
def test_release_0_16_3_arguments_in_the_environment(client, prefect, qsflow_home):
    job, result, circuit = _run(_function(client, "0.16.3"), "0.16.3", qsflow_home)
    assert result == _saved("0.16.3", circuit, None)  # update_status came with 0.22
    assert _history(prefect, job)[-2:] == ["RUNNING", "DONE"]
    assert MARKER not in job.logs()


@pytest.mark.slow
def test_release_0_28_arguments_under_data_path(client, prefect, qsflow_home):
    job, result, circuit = _run(_function(client, "0.28.0"), "0.28.0", qsflow_home, without_gateway=True)
    assert result == _saved("0.28.0", circuit, True)
    _assert_mapping_reached(prefect, job)
    assert MARKER not in job.logs()
    # The copy under DATA_PATH/arguments/ is gone with the job.
    assert not list((qsflow_home / "storage" / "data").rglob(f"{job.job_id}.json"))
