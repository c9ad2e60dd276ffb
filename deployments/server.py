"""The embedded default: one local Prefect server and one process worker, started once and reused.

``ServerlessClient()`` with nothing configured calls :func:`ensure_running`, which starts (or
finds) a Prefect server on 127.0.0.1 with its SQLite database under qsflow's home and a Prefect
process worker polling the ``qsflow`` work pool, both detached so later jobs reuse them.
``qsflow server start|stop|status`` manages the same pair explicitly.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from deployments.processes import alive, free_port, home_lock, read_state, terminate_group, write_state
from deployments.settings import API_RETRIES, WORK_POOL, home, max_running_jobs

SERVER_START_TIMEOUT = float(os.environ.get("QSFLOW_SERVER_START_TIMEOUT", "120"))


def _state_file() -> Path:
    return home() / "server.json"


def healthy(url: str, timeout: float = 2.0) -> bool:
    """True when the Prefect API at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _port_free(port: int) -> bool:
    """True when a server could listen on ``port`` now. As uvicorn does, the probe sets SO_REUSEADDR: the
    connections a stopped server leaves in TIME_WAIT must not move a restarted server to another port
    (clients and running jobs keep the URL)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


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
        # Jobs wait in QUEUED for a slot (max_running_jobs); Prefect's late-runs service would rewrite every
        # waiting run as "Late" after 15 s, racing the worker for SQLite's write lock ("database is locked").
        PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
        # Prefect's task-run recorder writes each task-run event in its own transaction by default (batch 1): with
        # distributed tasks that was half the server's CPU per task run (53 -> 30 ms measured). In batches of up to
        # 100 (a task run's Pending/Running/Completed coalesced) a state reaches the UI at most 1 s later.
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE=os.environ.get(
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "100"),
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL=os.environ.get(
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL", "1"),
        # Its event persister writes up to 200 events a transaction (Prefect: 20; still at least every 5 s): a
        # burst of task runs costs fewer transactions and duplicate-id reads (server CPU per distributed task
        # 12.6 -> 11.5 and 16.4 -> 13.6 ms in two paired runs). Only the events feed sees them later.
        PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE=os.environ.get(
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE", "200"),
        PREFECT_CLIENT_MAX_RETRIES=str(max(API_RETRIES, int(os.environ.get("PREFECT_CLIENT_MAX_RETRIES") or 0))),
        # The server runs this same Prefect, without CSRF protection unless it is asked for: a new client (a job's
        # runner makes several) need not ask it for its version and a CSRF token first (6 requests a job).
        PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED=os.environ.get("PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED",
                                                                   "false"),
        PREFECT_CLIENT_CSRF_SUPPORT_ENABLED=os.environ.get("PREFECT_CLIENT_CSRF_SUPPORT_ENABLED", os.environ.get(
            "PREFECT_SERVER_CSRF_PROTECTION_ENABLED", "false")),
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
    state = read_state(_state_file())
    url = state.get("url")
    return {
        **state,
        "server": bool(url) and alive(state.get("server_pid")) and healthy(url),
        "worker": alive(state.get("worker_pid")),
    }


def ensure_running(timeout: float = SERVER_START_TIMEOUT) -> str:
    """Start the embedded server and worker unless they already run; return the API URL."""
    with home_lock("server.lock"):
        state = status()
        if not state["server"]:
            state = _start_server(state, timeout)
            _ensure_status_relay(state["url"])
        if not state["worker"]:
            _ensure_work_pool(state["url"])
            from deployments import worker

            command = worker.command(WORK_POOL, f"qsflow-embedded-{os.getpid()}")
            env = prefect_env(state["url"])
            if worker.warm_available() and "PREFECT_WORKER_QUERY_SECONDS" not in os.environ:
                # it also polls when a run is scheduled or one of its runs ends: the timed poll (~20 ms of the
                # server's CPU each) is only the fallback
                env["PREFECT_WORKER_QUERY_SECONDS"] = "5"
            state["worker_pid"] = _spawn(command, "worker.log", env)
            state["worker"] = True
        write_state(_state_file(), {k: state[k] for k in ("url", "port", "server_pid", "worker_pid")})
    # Jobs' distributed tasks use one local Ray head; begin starting it now so it is warm by the first job.
    from deployments import ray_cluster

    ray_cluster.prestart_local_head()
    return state["url"]


def _start_server(state: dict, timeout: float) -> dict:
    terminate_group(state.get("worker_pid"), grace=10.0)
    terminate_group(state.get("server_pid"), grace=10.0)
    port = state.get("port")
    if not port or not _port_free(port):
        port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    pid = _spawn(
        [sys.executable, "-c", "import sys; from deployments.server import serve_api; sys.exit(serve_api())",
         "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        # The UI asks its API at 127.0.0.1:4200 unless told the port this server really has.
        "server.log", {**prefect_env(), "PREFECT_UI_API_URL": url},
    )
    deadline = time.monotonic() + timeout
    while not healthy(url, timeout=1.0):
        if not alive(pid):
            raise RuntimeError(
                f"The embedded Prefect server exited while starting; see {home() / 'server.log'}. "
                "Fix the error shown there, or point the client at a running server with "
                "ServerlessClient(host='http://HOST:PORT/api')."
            )
        if time.monotonic() > deadline:
            terminate_group(pid, grace=10.0)
            raise TimeoutError(
                f"The embedded Prefect server did not answer on {url} within {timeout:.0f} s; "
                f"see {home() / 'server.log'}. Raise QSFLOW_SERVER_START_TIMEOUT on a slow machine."
            )
        time.sleep(0.25)
    return {"url": url, "port": port, "server_pid": pid, "server": True,
            "worker_pid": None, "worker": False}


def serve_api() -> int:
    """``prefect server start`` with the arguments it is given, with :mod:`deployments.sqlite_tuning` installed
    (write transactions begun IMMEDIATE, events inserted with executemany; both explained there) and a work pool's
    polls recorded at most every two seconds (:mod:`deployments.poll_bookkeeping`)."""
    from deployments import poll_bookkeeping, sqlite_tuning

    sqlite_tuning.install()
    poll_bookkeeping.install()
    from prefect.cli import app

    app()
    return 0


def _ensure_status_relay(url: str) -> None:
    """The server's automation reporting jobs that end with no qsflow process left (``deployments.status_relay``),
    pointed at this start's URL."""
    from deployments import status_relay
    from deployments.connection import prefect_api

    with prefect_api(url) as client:
        status_relay.ensure(client)


def _ensure_work_pool(url: str) -> None:
    """The ``qsflow`` process pool, limited to ``max_running_jobs()`` runs at once (more wait in QUEUED)."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists

    limit = max_running_jobs()
    with SyncPrefectClient(url) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process", concurrency_limit=limit))
        except ObjectAlreadyExists:
            client.update_work_pool(WORK_POOL, WorkPoolUpdate(concurrency_limit=limit))


def stop() -> bool:
    """Stop the embedded worker and server; True if anything was running."""
    with home_lock("server.lock"):
        state = read_state(_state_file())
        was_running = alive(state.get("worker_pid")) or alive(state.get("server_pid"))
        terminate_group(state.get("worker_pid"), grace=10.0)
        terminate_group(state.get("server_pid"), grace=10.0)
        _state_file().unlink(missing_ok=True)
    from deployments import ray_cluster

    ray_stopped = ray_cluster.stop()
    return was_running or ray_stopped
