"""``qsflow worker`` (deployments/worker.py) against the tests' own Prefect server: it serves a process pool with
qsflow's warm worker and keeps to its ``--limit``; bad input is refused with the fix named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest

from conftest import PROGRAMS
from serverless_compat import QiskitFunction

POOL = "qsflow-worker-cli-test"
LIMIT = 2
JOBS = 4


def _worker(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deployments.cli", "worker", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _most_at_once(runs) -> int:
    """The most runs that were Running at the same moment (from Prefect's start and end times)."""
    edges = sorted([(run.start_time, 1) for run in runs] + [(run.end_time, -1) for run in runs],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same instant
    current = most = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def _hold_deployment_and_worker(client, prefect, log: Path, *worker_args: str):
    """The ``worker-cli-hold`` program's deployment, a copy of it on the test pool, and a ``qsflow worker`` on that
    pool started with ``worker_args`` (in a session of its own, output to ``log``)."""
    from deployments import server

    client.upload(QiskitFunction(title="worker-cli-hold", entrypoint="hold.py",
                                 working_dir=str(PROGRAMS / "worker_cli")))
    deployment = prefect.read_deployment_by_name("worker-cli-hold/worker-cli-hold")
    limited = _deployment_on(prefect, deployment, POOL)
    with open(log, "wb") as handle:
        worker = subprocess.Popen([sys.executable, "-m", "deployments.cli", "worker", "--pool", POOL, *worker_args],
                                  env=server.prefect_env(client.host), stdout=handle, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    return deployment, limited, worker


def test_qsflow_worker_serves_a_pool_and_keeps_to_its_limit(client, prefect, tmp_path) -> None:
    from deployments.processes import alive, terminate_group

    log = tmp_path / "worker.log"
    deployment, limited, worker = _hold_deployment_and_worker(client, prefect, log, "--limit", str(LIMIT),
                                                              "--name", "cli-worker")
    try:
        runs = [prefect.create_flow_run_from_deployment(
            limited, parameters={**deployment.parameters, "arguments": {"seconds": 4}}) for _ in range(JOBS)]
        jobs = [client.job(str(run.id)) for run in runs]
        results = [job.result(wait=True, cadence=0.5) for job in jobs]
        assert [job.status() for job in jobs] == ["DONE"] * JOBS, log.read_text()[-3000:]
        worker.send_signal(signal.SIGINT)  # Ctrl-C
        assert worker.wait(timeout=60) == 128 + signal.SIGINT
    finally:
        terminate_group(worker.pid, grace=5.0)
    assert not alive(worker.pid)
    assert "qsflow worker: stopped (SIGINT)." in log.read_text()
    for result in results:  # run by this worker, the program forked by its zygote (its runner by its forkserver:
        assert result["worker"] == "cli-worker", result  # tests/test_warm_worker.py)
        assert "deployments.program_zygote" in result["parent_command"], result
    finished = [prefect.read_flow_run(UUID(job.job_id)) for job in jobs]
    assert _most_at_once(finished) <= LIMIT, [(r.start_time, r.end_time) for r in finished]
    text = log.read_text()
    assert f"serving work pool {POOL!r}" in text and f"at most {LIMIT} jobs at once" in text, text[-3000:]


def test_a_job_outlives_its_worker_killed_alone(client, prefect, tmp_path) -> None:
    """SIGKILL to the worker process only (not its machine): its forkserver leaves, the job it started runs on to
    DONE, as with Prefect's stock worker (whose runs each have a session of their own)."""
    import time

    from deployments.processes import alive, descendants, terminate_group

    log = tmp_path / "worker.log"
    deployment, limited, worker = _hold_deployment_and_worker(client, prefect, log, "--name", "killed-alone")
    try:
        run = prefect.create_flow_run_from_deployment(
            limited, parameters={**deployment.parameters, "arguments": {"seconds": 6}})
        job = client.job(str(run.id))
        deadline = time.monotonic() + 180
        while not job.status().startswith("RUNNING"):
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        under = descendants(worker.pid)  # its forkserver, the run, the program
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        assert job.result(wait=True, cadence=0.5)["worker"] == "killed-alone"
        assert job.status() == "DONE"
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in under):  # nothing of it stays behind
            assert time.monotonic() < deadline, [pid for pid in under if alive(pid)]
            time.sleep(0.5)
    finally:
        terminate_group(worker.pid, grace=5.0)


def _deployment_on(prefect, deployment, pool: str):
    """A copy of a program's deployment on ``pool`` (its id), which only the worker under test serves."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    try:
        prefect.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    except ObjectAlreadyExists:
        pass
    return prefect.create_deployment(
        flow_id=deployment.flow_id, name=f"{deployment.name}-on-{pool}", entrypoint=deployment.entrypoint,
        parameters=deployment.parameters, parameter_openapi_schema=deployment.parameter_openapi_schema,
        enforce_parameter_schema=False, tags=deployment.tags, work_pool_name=pool)


@pytest.fixture
def worker_env(client, tmp_path) -> dict[str, str]:
    from deployments import server

    return server.prefect_env(client.host)


@pytest.mark.parametrize("limit", ["0", "-3", "four"])
def test_a_bad_limit_is_refused(worker_env, limit) -> None:
    done = _worker("--pool", POOL, "--limit", limit, env=worker_env)
    assert done.returncode == 2
    assert "--limit" in done.stderr and "1 or more" in done.stderr and "leave --limit out" in done.stderr


def test_bad_prefetch_seconds_are_refused(worker_env) -> None:
    done = _worker("--pool", POOL, "--prefetch-seconds", "-1", env=worker_env)
    assert done.returncode == 2
    assert "--prefetch-seconds" in done.stderr and "whole seconds, 0 or more" in done.stderr, done.stderr


def test_no_api_url_is_refused_naming_the_setting(worker_env, tmp_path) -> None:
    env = {k: v for k, v in worker_env.items() if k not in ("PREFECT_API_URL", "QSFLOW_HOST")}
    env["PREFECT_HOME"] = str(tmp_path)  # no profile that would name a server either
    done = _worker("--pool", POOL, env=env)
    assert done.returncode == 2
    assert "PREFECT_API_URL is not set" in done.stderr and "PREFECT_API_URL=http" in done.stderr, done.stderr


# The checks before a worker starts, run in this process (the API URL from a Prefect settings context, as Prefect's
# CLI reads it from the environment or profile): faster than a process each.
def test_an_unreachable_server_is_named(capsys) -> None:
    from deployments import worker
    from deployments.connection import prefect_api
    from deployments.processes import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    with prefect_api(url):
        assert worker.main(["--pool", POOL]) == 2
    assert f"No Prefect server answers at PREFECT_API_URL={url}" in capsys.readouterr().err


def test_a_pool_of_another_type_is_refused(client, prefect, capsys) -> None:
    from deployments import images, worker
    from deployments.connection import prefect_api

    pool = images.ensure_pool(prefect)  # the Docker pool of image functions
    with prefect_api(client.host):
        assert worker.main(["--pool", pool]) == 2
    err = capsys.readouterr().err
    assert "of type 'docker'" in err and f"prefect worker start --pool {pool}" in err, err


def test_a_type_other_than_process_is_refused(capsys) -> None:
    from deployments import worker

    assert worker.main(["--pool", POOL, "--type", "kubernetes"]) == 2
    assert f"prefect worker start --pool {POOL} --type kubernetes" in capsys.readouterr().err


def test_a_bad_worker_name_is_refused(capsys) -> None:
    from deployments import worker

    assert worker.main(["--pool", POOL, "--name", "a/b"]) == 2
    assert "cannot contain '/' or '%'" in capsys.readouterr().err


def test_without_the_warm_worker_it_is_prefects_stock_worker_with_the_same_options(worker_env, tmp_path) -> None:
    import time

    from deployments import worker
    from deployments.processes import terminate_group

    args = worker._parser().parse_args(["--pool", POOL, "-q", "a", "-q", "b"])
    assert worker.stock_command(args)[-4:] == ["--work-queue", "a", "--work-queue", "b"]
    log = tmp_path / "stock.log"
    with open(log, "wb") as handle:  # QSFLOW_WARM_WORKER=0: Prefect's own worker replaces the process (same pid)
        process = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "worker", "--pool", POOL, "--limit", "3", "--name", "stock",
             "--prefetch-seconds", "0"], env={**worker_env, "QSFLOW_WARM_WORKER": "0", "PYTHONUNBUFFERED": "1"},
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Worker 'stock' started!" not in log.read_text(errors="replace"):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        command = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")[1:-1]
        assert [c.decode() for c in command] == ["-m", "prefect", "worker", "start", "--pool", POOL, "--type",
                                                 "process", "--name", "stock", "--limit", "3",
                                                 "--prefetch-seconds", "0"]
    finally:
        terminate_group(process.pid, grace=20.0)
