"""prefect.yaml: `prefect deploy --all` against the tests' server deploys the example programs on the
qsflow process work pool, and qsflow's worker runs a flow run of that deployment to DONE."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from serverless_compat import serialization

from conftest import bell

ROOT = Path(__file__).resolve().parent.parent


def _prefect_cli(client, tmp_path, *args: str) -> str:
    env = dict(os.environ, PREFECT_API_URL=client.host, PREFECT_HOME=str(tmp_path / "prefect-home"), PWD=str(ROOT), COLUMNS="250")
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_prefect_deploy_all_and_the_worker_runs_it(client, prefect, tmp_path):
    _prefect_cli(client, tmp_path, "--no-prompt", "deploy", "--all")
    listed = _prefect_cli(client, tmp_path, "deployment", "ls")
    # One deployment: prefect.yaml's is the function's own, the one qsflow clients run.
    assert listed.count("transpile-remote/transpile-remote") == 1
    assert "qsflow-runner" not in listed

    function = client.function("transpile-remote")
    deployment = prefect.read_deployment_by_name("transpile-remote/transpile-remote")
    assert deployment.work_pool_name == "qsflow"
    assert deployment.parameters == {"program": "transpile-remote", "version": int(function.version)}
    assert "example" in deployment.tags and "qsflow" in deployment.tags

    arguments = {"circuit": bell(), "circuit_list": [bell()], "optimization_level": 1, "backend": "fake_kyiv"}
    run = prefect.create_flow_run_from_deployment(
        deployment.id, parameters={"arguments": serialization.to_jsonable(arguments)})
    job = client.job(str(run.id))
    result = job.result(cadence=1)
    assert job.status() == "DONE"
    [isa] = result["circuits"]
    assert set(isa.count_ops()) <= {"ecr", "rz", "sx", "x", "measure", "barrier"}  # fake_kyiv's basis

    # ... and a qsflow client runs the same deployment.
    assert "transpile-remote" in [f.title for f in client.list()]
    again = function.run(**arguments)
    assert [c.num_qubits for c in again.result(cadence=1)["circuits"]] == [isa.num_qubits]
