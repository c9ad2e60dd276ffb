"""The qsflow CLI and the qiskit_serverless alias for client scripts."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import PROGRAMS


def test_server_status_reports_the_running_embedded_server(client):
    out = subprocess.run([sys.executable, "-m", "deployments.cli", "server", "status"],
                         capture_output=True, text=True, check=True)
    state = json.loads(out.stdout)
    assert state["server"] is True and state["worker"] is True
    assert state["url"] == client.host


def test_server_start_reuses_the_running_server(client):
    out = subprocess.run([sys.executable, "-m", "deployments.cli", "server", "start"],
                         capture_output=True, text=True, check=True)
    assert client.host in out.stdout


def test_install_as_qiskit_serverless_in_a_client_script(client):
    script = f"""
import serverless_compat
serverless_compat.install_as_qiskit_serverless()
from qiskit_serverless import ServerlessClient, QiskitFunction, Job
c = ServerlessClient()
fn = c.upload(QiskitFunction(title="alias-echo", entrypoint="echo.py", working_dir={str(PROGRAMS / 'basic')!r}))
print("RESULT", fn.run(answer=42).result(cadence=1)["arguments"]["answer"], Job.MAPPING)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "RESULT 42 MAPPING" in out.stdout


def test_get_arguments_outside_a_job_is_empty(tmp_path, monkeypatch):
    from serverless_compat import get_arguments, is_running_in_serverless

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARGUMENTS_PATH", raising=False)
    monkeypatch.delenv("ENV_JOB_ID_GATEWAY", raising=False)
    assert get_arguments() == {}
    assert is_running_in_serverless() is False


def test_save_result_outside_a_job_prints_the_marker(capsys, monkeypatch):
    from serverless_compat import save_result

    monkeypatch.delenv("RESULTS_PATH", raising=False)
    assert save_result({"a": 1}) is False
    assert '\nSaved Result:{"a": 1}:End Saved Result\n' in capsys.readouterr().out
