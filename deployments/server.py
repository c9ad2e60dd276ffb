"""The embedded default: one local Prefect server and one process worker, started once and reused.

``ServerlessClient()`` with nothing configured calls :func:`ensure_running`, which starts (or
finds) a Prefect server on 127.0.0.1 with its SQLite database under qsflow's home and a Prefect
process worker polling the ``qsflow`` work pool, both detached so later jobs reuse them.
``qsflow server start|stop|status`` manages the same pair explicitly.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

from deployments.settings import WORK_POOL, home

SERVER_START_TIMEOUT = float(os.environ.get("QSFLOW_SERVER_START_TIMEOUT", "120"))


def _state_file() -> Path:
    return home() / "server.json"


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """Serialise start/stop between processes sharing one qsflow home."""
    with open(home() / "server.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is not alive.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def healthy(url: str, timeout: float = 2.0) -> bool:
    """True when the Prefect API at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _read_state() -> dict:
    try:
        return json.loads(_state_file().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_state(state: dict) -> None:
    tmp = _state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(_state_file())


def prefect_env(url: Optional[str] = None) -> dict[str, str]:
    """Environment for the embedded server, worker and CLI calls: Prefect's home under qsflow's."""
    base = home()
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(base / "prefect"),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{base / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
        # Jobs are picked up quickly: the worker polls every second (Prefect's default is 10 s).
        PREFECT_WORKER_QUERY_SECONDS=os.environ.get("PREFECT_WORKER_QUERY_SECONDS", "1"),
        PREFECT_WORKER_PREFETCH_SECONDS="0",
        QSFLOW_HOME=str(base),
    )
    if url:
        env["PREFECT_API_URL"] = url
        env["QSFLOW_HOST"] = url
    return env


def _spawn(args: list[str], log_name: str, env: dict[str, str]) -> int:
    log = open(home() / log_name, "ab")
    process = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, start_new_session=True, cwd=str(home()),
    )
    log.close()
    return process.pid


def status() -> dict:
    """What runs now: ``{"url", "server_pid", "worker_pid", "server": bool, "worker": bool}``."""
    state = _read_state()
    url = state.get("url")
    return {
        **state,
        "server": bool(url) and _alive(state.get("server_pid")) and healthy(url),
        "worker": _alive(state.get("worker_pid")),
    }


def ensure_running(timeout: float = SERVER_START_TIMEOUT) -> str:
    """Start the embedded server and worker unless they already run; return the API URL."""
    with _lock():
        state = status()
        if not state["server"]:
            state = _start_server(state, timeout)
        if not state["worker"]:
            _ensure_work_pool(state["url"])
            state["worker_pid"] = _spawn(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL,
                 "--type", "process", "--name", f"qsflow-embedded-{os.getpid()}"],
                "worker.log", prefect_env(state["url"]),
            )
            state["worker"] = True
        _write_state({k: state[k] for k in ("url", "port", "server_pid", "worker_pid")})
    # Jobs' distributed tasks use one local Ray head; begin starting it now so it is warm by the first job.
    from deployments import ray_cluster

    ray_cluster.prestart_local_head()
    return state["url"]


def _start_server(state: dict, timeout: float) -> dict:
    _terminate(state.get("worker_pid"))
    _terminate(state.get("server_pid"))
    port = state.get("port")
    if not port or not _port_free(port):
        port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    pid = _spawn(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        "server.log", prefect_env(),
    )
    deadline = time.monotonic() + timeout
    while not healthy(url, timeout=1.0):
        if not _alive(pid):
            raise RuntimeError(
                f"The embedded Prefect server exited while starting; see {home() / 'server.log'}. "
                "Fix the error shown there, or point the client at a running server with "
                "ServerlessClient(host='http://HOST:PORT/api')."
            )
        if time.monotonic() > deadline:
            _terminate(pid)
            raise TimeoutError(
                f"The embedded Prefect server did not answer on {url} within {timeout:.0f} s; "
                f"see {home() / 'server.log'}. Raise QSFLOW_SERVER_START_TIMEOUT on a slow machine."
            )
        time.sleep(0.25)
    return {"url": url, "port": port, "server_pid": pid, "server": True,
            "worker_pid": None, "worker": False}


def _ensure_work_pool(url: str) -> None:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with SyncPrefectClient(url) as client:
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))


def _terminate(pid: Optional[int], grace: float = 10.0) -> None:
    """Stop a process group we started: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop() -> bool:
    """Stop the embedded worker and server; True if anything was running."""
    with _lock():
        state = _read_state()
        was_running = _alive(state.get("worker_pid")) or _alive(state.get("server_pid"))
        _terminate(state.get("worker_pid"))
        _terminate(state.get("server_pid"))
        _state_file().unlink(missing_ok=True)
    from deployments import ray_cluster

    ray_stopped = ray_cluster.stop()
    return was_running or ray_stopped
