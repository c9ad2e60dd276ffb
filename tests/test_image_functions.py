"""Image functions: a provider function whose code lives in a container image, run on a Prefect
Docker work pool by prefect-docker's own worker, against a real Docker engine (dockerd).

The tests start a private dockerd (loopback only) when Docker is installed, build a test image with
``docker import`` of a root filesystem made from this machine's files (tests/docker_engine.py), and
stop dockerd at the end. Without Docker they skip, saying why; with ``QSFLOW_REQUIRE_DOCKER=1`` (as
.ci/run sets) they fail instead. The first tests need no Docker: they check that upload, listing and
files work without a Docker work pool, and that run() then fails at once naming the pool to create.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.exceptions import ObjectNotFound
from qiskit import QuantumCircuit

from deployments import images
from deployments.processes import terminate_group
from deployments.server import prefect_env
from flows.status import to_job_status
from serverless_compat import QiskitFunction, QiskitServerlessException

from conftest import PROGRAMS, bell
from docker_engine import build_image, start_engine, unavailable_reason

JOB_TIMEOUT = 300
IMAGE = "qsflow-test/acme-runner:1"


def _delete_pool(prefect) -> None:
    with contextlib.suppress(ObjectNotFound):
        prefect.delete_work_pool(images.IMAGE_POOL)


# -- without a Docker work pool ----------------------------------------------------------------

def test_upload_listing_and_files_work_without_a_docker_pool(client, prefect, tmp_path):
    _delete_pool(prefect)
    client.upload(QiskitFunction(title="no-pool", provider="acme", image="registry.example:5000/acme/fn:2"))
    fn = client.function("acme/no-pool")
    assert (fn.provider, fn.title, fn.image) == ("acme", "no-pool", "registry.example:5000/acme/fn:2")
    assert "acme/no-pool" in [f.full_title for f in client.functions()]
    (tmp_path / "notes.txt").write_text("for the image\n")
    client.file_upload(str(tmp_path / "notes.txt"), function=fn)
    assert client.files(function=fn) == ["notes.txt"]

    with pytest.raises(QiskitServerlessException) as refused:
        fn.run(x=1)
    text = str(refused.value)
    assert "Code: 503" in text
    assert f"Prefect Docker work pool '{images.IMAGE_POOL}'" in text
    assert f"prefect worker start --pool {images.IMAGE_POOL} --type docker" in text
    assert "qsflow docker-pool create" in text
    assert fn.jobs() == []  # nothing was queued

    # Once the pool exists, the same function's jobs are queued on it (its deployment moves there).
    images.ensure_pool(prefect)
    try:
        job = fn.run(x=1)
        assert job.status() == "QUEUED"
        deployment = prefect.read_deployment_by_name("acme--no-pool/acme--no-pool")
        assert deployment.work_pool_name == images.IMAGE_POOL
        assert deployment.job_variables == {"image": "registry.example:5000/acme/fn:2"}
        job.stop()
    finally:
        _delete_pool(prefect)


@pytest.mark.parametrize("function, fix", [
    (dict(title="no-provider", image="acme/fn:1"), "belongs to a provider"),
    (dict(title="bad-ref", provider="acme", image="Not An Image!"), "is not a Docker image reference"),
    (dict(title="deps", provider="acme", image="acme/fn:1", dependencies=["tomli-w==1.0.0"]),
     "install tomli-w==1.0.0 in the image"),
])
def test_upload_refuses_an_unusable_image_function(client, function, fix):
    with pytest.raises(QiskitServerlessException) as refused:
        client.upload(QiskitFunction(**function))
    assert fix in str(refused.value)
    full = f"{function.get('provider')}/{function['title']}" if function.get("provider") else function["title"]
    with pytest.raises(QiskitServerlessException, match="doesn't exist"):
        client.function(full)


def test_the_pool_template_mounts_qsflow_and_uses_the_host_network(qsflow_home):
    defaults = images.job_defaults()
    root = str(Path(images.__file__).resolve().parent.parent)
    assert any(v.startswith(f"{root}:") and v.endswith(":ro") for v in defaults["volumes"])
    assert f"{qsflow_home}:{qsflow_home}" in defaults["volumes"]
    assert not any(v.split(":")[0] in {"/", "/usr", "/usr/local"} for v in defaults["volumes"])
    assert defaults["network_mode"] == "host"
    assert defaults["command"].endswith("-m prefect flow-run execute")
    assert defaults["env"]["QSFLOW_IN_CONTAINER"] == "1"
    template = images.base_job_template()
    assert template["job_configuration"]["image"] == "{{ image }}"
    assert template["variables"]["properties"]["volumes"]["default"] == defaults["volumes"]


# -- with Docker ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    reason = unavailable_reason()
    if reason:
        if os.environ.get("QSFLOW_REQUIRE_DOCKER") == "1":
            pytest.fail(f"QSFLOW_REQUIRE_DOCKER=1 but {reason}")
        pytest.skip(reason)
    started = start_engine()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def image(engine):
    files = {
        "/runner/runner.py": (PROGRAMS / "image_runner" / "runner.py").read_text(),
        "/usr/lib/python3/dist-packages/image_only_lib.py": 'NAME = "only in the image"\n',
        "/etc/qsflow-test-image": "qsflow test image\n",
    }
    build_image(engine, IMAGE, files)
    return IMAGE


@pytest.fixture(scope="module")
def docker_worker(client, engine, image, qsflow_home):
    """The Docker work pool and prefect-docker's worker for it, as `qsflow docker-pool create` + README."""
    from deployments.connection import prefect_api

    with prefect_api(client.host) as api:
        images.ensure_pool(api)
    env = {**prefect_env(client.host), "DOCKER_HOST": engine.host}
    log = qsflow_home / "docker-worker.log"
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", images.IMAGE_POOL,
             "--type", "docker", "--name", "qsflow-test-docker"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True, cwd=str(qsflow_home),
        )
    try:
        yield log
    finally:
        terminate_group(worker.pid, grace=15.0)
        with prefect_api(client.host) as api:
            _delete_pool(api)


def _history(prefect, job_id: str) -> list[str]:
    statuses = [to_job_status(s.type, s.name) for s in prefect.read_flow_run_states(job_id)]
    return [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]


def _wait(job, log: Path, expected: str) -> None:
    try:
        status = job.wait(timeout=JOB_TIMEOUT)
    except TimeoutError as exc:
        status = str(exc)
    assert status == expected, f"{status}\njob logs:\n{job.logs()}\nworker log:\n{log.read_text()[-4000:]}"


def test_image_function_runs_in_its_container(client, prefect, docker_worker, tmp_path):
    fn = client.upload(QiskitFunction(title="image-runner", provider="acme", image=IMAGE))
    (tmp_path / "input.txt").write_text("uploaded before the job\n")
    client.file_upload(str(tmp_path / "input.txt"), function=fn)
    circuit = bell()

    job = fn.run(a=2, b=40, circuit=circuit)
    _wait(job, docker_worker, "DONE")

    result = job.result()
    assert result["sum"] == 42
    # The image's own interpreter ran the Runner, with a module only the image has.
    assert result["python"] == "/usr/bin/python3"
    assert result["image_marker"] == "qsflow test image"
    assert result["image_lib"] == "only in the image"
    # Arguments and result carry Qiskit objects both ways.
    assert isinstance(result["circuit"], QuantumCircuit) and result["circuit"] == circuit
    assert result["num_qubits"] == 2
    # /data is the user's space of acme/image-runner, as for a process-pool job.
    assert result["data_path"] == "/data"
    assert result["data_in"] == "uploaded before the job\n"
    assert "from_image.txt" in client.files(function=fn)
    target = client.file_download("from_image.txt", function=fn, download_location=str(tmp_path))
    assert Path(target).read_text() == "written in the container for 2\n"

    assert _history(prefect, job.job_id) == ["QUEUED", "INITIALIZING", "RUNNING", "RUNNING: MAPPING", "DONE"]
    logs = job.logs()
    assert "runner: started with ['a', 'b', 'circuit']" in logs
    assert "INFO: from the image's logger" in logs
    assert "for the provider only" not in logs
    assert "INFO: for the provider only" in job.provider_logs()
    flow_run = prefect.read_flow_run(job.job_id)
    assert flow_run.work_pool_name == images.IMAGE_POOL
    # prefect-docker's record of the container: <docker base url>:<container id>
    assert re.fullmatch(r"http\+docker://localhost:[0-9a-f]{64}", flow_run.infrastructure_pid or "")
    assert job.job_id in [j.job_id for j in fn.jobs()]


def test_image_function_error_is_one_error_event(client, docker_worker):
    fn = client.function("acme/image-runner")
    job = fn.run(a=1, b=1, fail="value 7")
    _wait(job, docker_worker, "ERROR")
    with pytest.raises(QiskitServerlessException, match="ValueError: bad input value 7"):
        job.result()
    events = job.events(type="ERROR")
    assert len(events) == 1
    assert events[0].data["exception"] == "ValueError"
    assert "runner: started" in job.logs()


def test_stopping_an_image_job_removes_its_container(client, engine, docker_worker):
    fn = client.function("acme/image-runner")
    job = fn.run(a=1, b=1, sleep=600)
    deadline = time.monotonic() + JOB_TIMEOUT
    while "runner: sleeping" not in job.logs():
        assert time.monotonic() < deadline and job.status() not in {"DONE", "ERROR", "CANCELED"}, job.logs()
        time.sleep(0.5)
    assert engine.docker("ps", "-q").stdout.strip()  # its container runs
    job.stop()
    _wait(job, docker_worker, "CANCELED")
    while engine.docker("ps", "-aq").stdout.strip():
        assert time.monotonic() < deadline, engine.docker("ps", "-a").stdout.decode()
        time.sleep(0.5)
