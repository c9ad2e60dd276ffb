"""A Prefect server that requires basic auth (PREFECT_SERVER_API_AUTH_STRING), reached by the client.

The module starts its own real ``prefect server start`` on a free 127.0.0.1 port with its own
PREFECT_HOME and database, and a process worker holding the same credentials; both are stopped
at the end. The client is pointed at it with ``host=`` and a qsflow home of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, temporary_settings

from deployments import server
from deployments.processes import free_port, terminate_group
from deployments.settings import WORK_POOL
from serverless_compat import QiskitFunction, QiskitServerlessException, ServerlessClient

from conftest import PROGRAMS

AUTH = "admin:s3cret-4uth"
JOB_TIMEOUT = 300


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
        QSFLOW_HOME=str(home / "qsflow"),
        **extra,
    )
    return env


def _spawn(args: list[str], env: dict[str, str], log: Path) -> int:
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, cwd=env["QSFLOW_HOME"]).pid


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """``(url, home)`` of a Prefect server requiring AUTH; stopped (with any worker) at the end."""
    home = tmp_path_factory.mktemp("auth-server")
    (home / "qsflow").mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    pid = _spawn([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                 _env(home, PREFECT_SERVER_API_AUTH_STRING=AUTH), home / "server.log")
    pids = [pid]
    try:
        deadline = time.monotonic() + server.SERVER_START_TIMEOUT
        while not server.healthy(url, timeout=1.0):
            assert time.monotonic() < deadline, (home / "server.log").read_text()[-3000:]
            time.sleep(0.25)
        yield {"url": url, "home": home, "pids": pids}
    finally:
        for process in reversed(pids):
            terminate_group(process, grace=10.0)


@pytest.fixture
def own_home(auth_server, monkeypatch):
    """The client's qsflow home (its local store) is the auth server's, not the session's."""
    monkeypatch.setenv("QSFLOW_HOME", str(auth_server["home"] / "qsflow"))
    with temporary_settings(restore_defaults={PREFECT_API_AUTH_STRING, PREFECT_API_KEY}):
        yield


def test_without_credentials_one_error_names_the_setting(auth_server, own_home):
    with pytest.raises(QiskitServerlessException) as refused:
        ServerlessClient(host=auth_server["url"])
    message = str(refused.value)
    assert "requires authentication" in message
    assert "PREFECT_API_AUTH_STRING" in message
    assert "token=" in message
    with pytest.raises(QiskitServerlessException, match="refused the token given as its auth string"):
        ServerlessClient(host=auth_server["url"], token="admin:wrong")
    with temporary_settings(updates={PREFECT_API_AUTH_STRING: "admin:wrong"}):
        with pytest.raises(QiskitServerlessException, match="refused the credentials in PREFECT_API_AUTH_STRING"):
            ServerlessClient(host=auth_server["url"])
    # An API key (Prefect Cloud's credential) is sent as a bearer token, which a basic-auth server refuses.
    with temporary_settings(updates={PREFECT_API_KEY: "pnu_not-for-this-server"}):
        with pytest.raises(QiskitServerlessException, match="refused the credentials in PREFECT_API_KEY"):
            ServerlessClient(host=auth_server["url"])


def test_the_token_is_the_auth_string(auth_server, own_home):
    client = ServerlessClient(host=auth_server["url"], token=AUTH)
    uploaded = client.upload(QiskitFunction(title="auth-echo", entrypoint="echo.py",
                                            working_dir=str(PROGRAMS / "basic")))
    assert uploaded.version == "1"
    assert [f.title for f in client.functions()] == ["auth-echo"]
    assert client.function("auth-echo").entrypoint == "echo.py"


def test_prefect_setting_and_a_job_run_by_a_worker_with_the_same_credentials(auth_server, own_home):
    with temporary_settings(updates={PREFECT_API_AUTH_STRING: AUTH}):
        client = ServerlessClient(host=auth_server["url"])
        fn = client.upload(QiskitFunction(title="auth-job", entrypoint="echo.py",
                                          working_dir=str(PROGRAMS / "basic")))
        assert "auth-job" in [f.title for f in client.list()]
        # The worker holds the credentials as Prefect's own setting. Its jobs would start a local Ray
        # head unless an address is configured; echo.py does not use Ray, so none is ever contacted.
        home = auth_server["home"]
        auth_server["pids"].append(_spawn(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL, "--type", "process"],
            _env(home, PREFECT_API_URL=auth_server["url"], PREFECT_API_AUTH_STRING=AUTH,
                 PREFECT_WORKER_QUERY_SECONDS="1", QSFLOW_RAY_ADDRESS="127.0.0.1:1"),
            home / "worker.log"))
        job = fn.run(answer=42)
        assert job.wait(timeout=JOB_TIMEOUT) == "DONE", (home / "worker.log").read_text()[-3000:]
        assert job.result()["arguments"] == {"answer": 42}
        assert "saving result" in job.logs()


def test_users_told_apart_by_token_behind_the_shared_auth_string(auth_server, own_home, tmp_path):
    from prefect.blocks.system import Secret

    from deployments.access import USERS_BLOCK, token_key
    from deployments.connection import prefect_api

    from conftest import make_tar

    with temporary_settings(updates={PREFECT_API_AUTH_STRING: AUTH}):
        with prefect_api(auth_server["url"]):
            Secret(value={token_key("alice-token"): {"user": "alice", "providers": []}}).save(USERS_BLOCK)
        try:
            alice = ServerlessClient(host=auth_server["url"], token="alice-token")
            message = alice.file_upload(str(make_tar(tmp_path / "alice.tar")))
            assert "users/alice/alice.tar" in message
            assert alice.files() == ["alice.tar"]
            with pytest.raises(QiskitServerlessException, match="maps tokens to users"):
                ServerlessClient(host=auth_server["url"]).files()
        finally:
            with prefect_api(auth_server["url"]):
                Secret.delete(USERS_BLOCK)
