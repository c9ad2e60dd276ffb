"""Cluster mode on one machine, for trying it and for its tests: ``qsflow cluster up|down|status``.

``up`` starts, all on 127.0.0.1 and under one temporary directory:

- PostgreSQL (``initdb`` into the directory, a free port, password auth; :mod:`deployments.postgres`);
- a Prefect server on it (``PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://...``);
- an S3 server (moto's, the one the data-store tests use) with a bucket, saved as the ``qsflow-storage`` block;
- a Ray head and a second Ray node with a custom resource of its own (``SECOND_NODE_RESOURCE``), saved as the
  ``qsflow-ray`` block, so every job's program connects there;
- N process workers on the ``qsflow`` work pool, ``qsflow worker --limit 4`` each (qsflow's warm worker;
  ``QSFLOW_WARM_WORKER=0`` makes them Prefect's stock ``prefect worker start``), each with a qsflow home of its
  own (as if on its own machine: what jobs share goes through the Prefect API, S3 and Ray only).

No qsflow-specific server sits in between: a client needs the Prefect API URL only (the store's S3 settings are
in the block it reads from there), ``ServerlessClient(host=api_url)``. ``down`` stops every process ``up``
started, by the pids kept in ``<qsflow home>/cluster.json``, and removes the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from deployments import postgres, ray_cluster
from deployments.processes import (alive, descendants, free_port, home_lock, read_state, terminate_group,
                                   write_state)
from deployments.settings import STORAGE_BLOCK, WORK_POOL, home

SECOND_NODE_RESOURCE = "qsflow_second_node"
S3_BUCKET = "qsflow-cluster"
S3_CREDENTIALS = {"key": "qsflow-cluster", "secret": "qsflow-cluster"}  # moto accepts any; a real S3 needs yours
# What a worker's log says once it polls: qsflow's warm worker (deployments/worker.py), Prefect's stock one.
WORKER_READY = ("forkserver ready", "started!")
START_TIMEOUT = float(os.environ.get("QSFLOW_CLUSTER_START_TIMEOUT", "180"))


class ClusterError(RuntimeError):
    """The local cluster could not be started; the message names the log to read."""


def _state_file() -> Path:
    return home() / "cluster.json"


def _spawn(args: list[str], log: Path, env: dict[str, str], cwd: Path) -> int:
    with open(log, "ab") as handle:
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True, cwd=str(cwd))
    return process.pid


def _wait(ready, pid: int, what: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if not alive(pid):
            raise ClusterError(f"{what} exited while starting; see {log}.")
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} did not start within {timeout:.0f} s; see {log}. "
                               "Raise QSFLOW_CLUSTER_START_TIMEOUT on a slow machine.")
        time.sleep(0.25)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _log_says(log: Path, text: str) -> bool:
    try:
        return text.encode() in log.read_bytes()
    except FileNotFoundError:
        return False


def _save(state: dict) -> None:
    write_state(_state_file(), state)


def up(workers: int = 2, worker_limit: int = 4, ray_cpus: int = 2, lost_jobs_policy: str = "crash",
       lost_after: float = 90.0, timeout: float = START_TIMEOUT) -> dict:
    """Start the whole stack (see the module doc); return :func:`status`. Refuses if one is already up here.

    ``lost_jobs_policy``/``lost_after``: what happens to jobs whose process went silent that long
    (:mod:`deployments.lost_jobs`: ``"crash"`` ends them ERROR, ``"retry"`` runs them again elsewhere)."""
    with home_lock("cluster.lock"):
        current = read_state(_state_file())
        if current and _any_alive(current):
            raise ClusterError(f"A local cluster already runs from {current.get('dir')} (API {current.get('api_url')}); "
                               "stop it first: `qsflow cluster down`.")
        base = Path(tempfile.mkdtemp(prefix="qsflow-cluster-"))
        base.chmod(0o755)  # PostgreSQL's user must reach its data directory inside
        state: dict = {"dir": str(base), "workers": []}
        _save(state)
        try:
            _start_all(state, base, workers, worker_limit, ray_cpus, (lost_jobs_policy, lost_after), timeout)
        except BaseException:
            _stop_all(state)
            raise
    return status()


def _start_all(state: dict, base: Path, workers: int, worker_limit: int, ray_cpus: int,
               lost_jobs: tuple[str, float], timeout: float) -> None:
    from deployments.server import _ensure_work_pool, healthy

    db = postgres.start(base / "postgres", base / "postgres.log")
    state["postgres"] = {"pid": db.pid, "port": db.port}
    _save(state)
    # One service after the other, each taking a free port once the ones before listen on theirs. (A Prefect server
    # started alongside S3 and Ray exited while starting here once; its log was not kept, a port picked twice is
    # the likely cause.)
    state["s3"] = _start_s3(base, timeout)
    _save(state)
    state["ray"] = _start_ray(base, ray_cpus, timeout)
    _save(state)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    server_env = _prefect_env(base / "server", url)
    server_env.update(PREFECT_API_DATABASE_CONNECTION_URL=db.url, PREFECT_UI_API_URL=url,
                      PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port),
                      # the lost-jobs automation acts within 1 s of a job's silence passing --lost-after, not 5
                      PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY="PT1S")
    server_log = base / "prefect-server.log"
    pid = _spawn([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                 server_log, server_env, base / "server")
    state.update(api_url=url, server_pid=pid)
    _save(state)
    _wait(lambda: healthy(url, timeout=1.0), pid, "The Prefect server", server_log, timeout)

    _ensure_work_pool(url)
    # The workers next: their start (a forkserver loading Prefect and qsflow each) overlaps the configuration.
    for index in range(1, workers + 1):
        state["workers"].append(_start_worker(base, url, f"qsflow-cluster-worker-{index}", worker_limit))
        _save(state)
    _configure_server(url, state, *lost_jobs)
    for started in state["workers"]:  # polling its pool (the warm one: with its forkserver loaded)
        log = Path(started["log"])
        _wait(lambda: _log_says(log, WORKER_READY[0]) or _log_says(log, WORKER_READY[1]), started["pid"],
              f"The worker {started['name']}", log, timeout)


def _prefect_env(directory: Path, url: Optional[str] = None) -> dict[str, str]:
    """A process's environment with Prefect's and qsflow's homes in ``directory`` (its own 'machine')."""
    from deployments.server import prefect_env

    directory.mkdir(parents=True, exist_ok=True)
    env = prefect_env(url)
    for key in ("PREFECT_API_DATABASE_CONNECTION_URL", "QSFLOW_RAY_ADDRESS", "RAY_ADDRESS", "QSFLOW_HOST"):
        env.pop(key, None)
    env.update(PREFECT_HOME=str(directory / "prefect"), QSFLOW_HOME=str(directory), QSFLOW_RAY_PRESTART="0")
    return env


def _start_s3(base: Path, timeout: float) -> dict:
    port = free_port()
    log = base / "s3.log"
    pid = _spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log, dict(os.environ), base)
    _wait(lambda: _port_open(port), pid, "The S3 server (moto)", log, timeout)
    endpoint = f"http://127.0.0.1:{port}"
    import s3fs

    s3fs.S3FileSystem(**S3_CREDENTIALS, client_kwargs=_s3_client_kwargs(endpoint)).call_s3(
        "create_bucket", Bucket=S3_BUCKET)
    return {"pid": pid, "endpoint": endpoint, "bucket": S3_BUCKET}


def _s3_client_kwargs(endpoint: str) -> dict:
    return {"endpoint_url": endpoint, "region_name": "us-east-1"}


def _start_ray(base: Path, cpus: int, timeout: float) -> dict:
    head_dir, node_dir = base / "rh", base / "rn"  # Ray's socket paths must stay short
    port = free_port()
    head_log, node_log = base / "ray-head.log", base / "ray-node.log"
    env = ray_cluster.head_env(cpus)
    env.pop(ray_cluster.RESOURCES_ENV, None)
    head_pid = _spawn(ray_cluster.head_command(port, temp_dir=head_dir, num_cpus=cpus), head_log, env, base)
    ray = {"address": f"127.0.0.1:{port}", "head_pid": head_pid, "temp_dirs": [str(head_dir), str(node_dir)]}
    _wait(lambda: _log_says(head_log, "Ray runtime started") and _port_open(port), head_pid, "The Ray head",
          head_log, timeout)
    ray["node_pid"] = _spawn(
        [sys.executable, "-m", "deployments.ray_node", "--address", ray["address"], "--temp-dir", str(node_dir),
         "--num-cpus", "1", "--resources", json.dumps({SECOND_NODE_RESOURCE: 2})],
        node_log, env, Path(__file__).resolve().parent.parent)
    _wait(lambda: _log_says(node_log, "Ray node started"), ray["node_pid"], "The second Ray node", node_log, timeout)
    return ray


def s3_store(state: dict):
    """The ``QsflowStore`` on the cluster's S3 bucket (credentials in its secret settings)."""
    from prefect.filesystems import RemoteFileSystem
    from prefect.types import SecretDict

    from blocks.storage import QsflowStore

    return QsflowStore(
        filesystem=RemoteFileSystem(basepath=f"s3://{state['s3']['bucket']}/qsflow",
                                    settings={"client_kwargs": _s3_client_kwargs(state["s3"]["endpoint"])}),
        secret_settings=SecretDict(dict(S3_CREDENTIALS)),
    )


def _configure_server(url: str, state: dict, lost_jobs_policy: str, lost_after: float) -> None:
    """The store block on S3, the Ray block and the lost-jobs automation."""
    from deployments import lost_jobs
    from deployments.connection import prefect_api
    from tasks.ray_block import BLOCK_NAME, RayClusterConfig

    with prefect_api(url) as client:
        s3_store(state).save(STORAGE_BLOCK, overwrite=True)
        RayClusterConfig(address=state["ray"]["address"]).save(BLOCK_NAME, overwrite=True)
        lost_jobs.ensure_automation(client, lost_jobs_policy, lost_after)


def _start_worker(base: Path, url: str, name: str, limit: int) -> dict:
    from deployments import worker
    from deployments.lost_jobs import HEARTBEAT_ENV

    directory = base / name
    env = {**_prefect_env(directory, url), **HEARTBEAT_ENV, "PYTHONUNBUFFERED": "1"}  # its log says when it is ready
    log = base / f"{name}.log"
    pid = _spawn(worker.command(WORK_POOL, name=name, limit=limit), log, env, directory)
    return {"name": name, "pid": pid, "home": str(directory), "log": str(log)}


def kill_worker(name: str, with_jobs: bool = True) -> list[int]:
    """SIGKILL the worker ``name``, and with ``with_jobs`` every process under it (its jobs' flow-run processes and
    programs), as when its machine dies; return the pids killed. Without ``with_jobs`` the jobs it started run on
    and finish normally (``qsflow worker``'s forked runs outlive its forkserver; Prefect's stock worker starts each
    in a session of its own)."""
    worker = next((w for w in read_state(_state_file()).get("workers", []) if w["name"] == name), None)
    if worker is None or not alive(worker["pid"]):
        raise ClusterError(f"No running worker named {name!r}; see `qsflow cluster status`.")
    victims = [worker["pid"], *(descendants(worker["pid"]) if with_jobs else [])]
    for pid in victims:  # all at once: no child notices its parent going first
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return victims


def _any_alive(state: dict) -> bool:
    return any(alive(pid) for pid in _pids(state))


def _pids(state: dict) -> list[int]:
    ray = state.get("ray", {})
    pids = [w.get("pid") for w in state.get("workers", [])]
    pids += [state.get("server_pid"), ray.get("node_pid"), ray.get("head_pid"), state.get("s3", {}).get("pid"),
             state.get("postgres", {}).get("pid")]
    return [pid for pid in pids if pid]


def _stop_all(state: dict) -> None:
    # Jobs first (their workers), then what jobs use; PostgreSQL last, once the server is gone.
    for worker in state.get("workers", []):
        terminate_group(worker.get("pid"), grace=10.0)
    terminate_group(state.get("server_pid"), grace=10.0)
    ray = state.get("ray", {})
    terminate_group(ray.get("node_pid"), grace=10.0)
    terminate_group(ray.get("head_pid"), grace=3.0)  # Ray drains for up to 30 s on SIGTERM
    for temp_dir, leader in zip(ray.get("temp_dirs", []), (ray.get("head_pid"), ray.get("node_pid"))):
        ray_cluster.kill_session(temp_dir, leader)
    terminate_group(state.get("s3", {}).get("pid"), grace=5.0)
    postgres.stop(state.get("postgres", {}).get("pid"))
    if state.get("dir"):
        shutil.rmtree(state["dir"], ignore_errors=True)
    _state_file().unlink(missing_ok=True)


def down() -> bool:
    """Stop every process :func:`up` started and remove its directory; True if anything was running."""
    with home_lock("cluster.lock"):
        state = read_state(_state_file())
        was_running = _any_alive(state)
        _stop_all(state)
        return was_running


def status() -> dict:
    """What runs: the API URL, the S3 endpoint and bucket, the Ray address, and each process's pid and liveness."""
    state = read_state(_state_file())
    if not state:
        return {"up": False}
    from deployments.server import healthy

    report = {
        "dir": state.get("dir"),
        "api_url": state.get("api_url"),
        "prefect_server": {"pid": state.get("server_pid"),
                           "up": alive(state.get("server_pid")) and healthy(state.get("api_url") or "")},
        "postgres": {**state.get("postgres", {}), "up": alive(state.get("postgres", {}).get("pid"))},
        "s3": {**state.get("s3", {}), "up": alive(state.get("s3", {}).get("pid"))},
        "ray": {**state.get("ray", {}), "up": alive(state.get("ray", {}).get("head_pid"))
                and alive(state.get("ray", {}).get("node_pid"))},
        "workers": [{**w, "up": alive(w["pid"])} for w in state.get("workers", [])],
    }
    report["up"] = all(report[k]["up"] for k in ("prefect_server", "postgres", "s3", "ray")) and all(
        w["up"] for w in report["workers"])
    return report


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="qsflow cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--workers", type=int, default=2, help="process workers, `qsflow worker` each (default 2)")
    parser.add_argument("--worker-limit", type=int, default=4, help="jobs each worker runs at once (default 4)")
    parser.add_argument("--lost-jobs", choices=["crash", "retry"], default="crash",
                        help="jobs whose machine died: end ERROR (crash, default) or run again elsewhere (retry)")
    parser.add_argument("--lost-after", type=float, default=90.0,
                        help="seconds without a heartbeat before a job counts as lost (default 90)")
    args = parser.parse_args(argv)
    if args.action == "up":
        try:
            report = up(workers=args.workers, worker_limit=args.worker_limit, lost_jobs_policy=args.lost_jobs,
                        lost_after=args.lost_after)
        except (ClusterError, postgres.PostgresMissing, RuntimeError) as exc:
            print(f"qsflow cluster up: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(report, indent=2))
        print(f"\nClients: ServerlessClient(host={report['api_url']!r})  (or QSFLOW_HOST={report['api_url']})\n"
              "Stop everything: qsflow cluster down")
        return 0
    if args.action == "down":
        print("Local cluster stopped." if down() else "No local cluster was running.")
        return 0
    report = status()
    print(json.dumps(report, indent=2))
    return 0 if report["up"] else 3


if __name__ == "__main__":
    sys.exit(main())
