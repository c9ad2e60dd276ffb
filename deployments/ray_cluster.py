"""The Ray cluster that jobs' distributed tasks run on.

Which cluster, in order:

1. ``QSFLOW_RAY_ADDRESS`` (``ray://host:10001``, ``host:6379`` or ``auto``): an existing cluster, used as is.
2. The ``qsflow-ray`` config block (``tasks.ray_block.RayClusterConfig``) on the Prefect server, read by the
   runner for each job (see :func:`tasks.ray_block.configured_address`).
3. Otherwise the *local head*: one ``ray start --head`` on 127.0.0.1 per qsflow home, started on first use,
   detached, and reused by every later job and local script until :func:`stop` (``deployments.server.stop()``
   calls it). Its CPU count is ``QSFLOW_RAY_NUM_CPUS`` (default: all cores), extra custom resources come from
   ``QSFLOW_RAY_RESOURCES`` (JSON), its object store size from ``QSFLOW_RAY_OBJECT_STORE_BYTES``.

This module does not import Ray or Prefect; it drives the ``ray`` CLI in a child process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from deployments import ray_warm_workers
from deployments.processes import alive, free_port, home_lock, read_state, stat_fields, terminate_group, write_state
from deployments.settings import home, home_digest

ADDRESS_ENV = "QSFLOW_RAY_ADDRESS"
NUM_CPUS_ENV = "QSFLOW_RAY_NUM_CPUS"
RESOURCES_ENV = "QSFLOW_RAY_RESOURCES"
OBJECT_STORE_ENV = "QSFLOW_RAY_OBJECT_STORE_BYTES"
DASHBOARD_ENV = "QSFLOW_RAY_DASHBOARD"  # 1: start the local head with Ray's dashboard and state API
START_TIMEOUT = float(os.environ.get("QSFLOW_RAY_START_TIMEOUT", "120"))
_READY_LINE = "Ray runtime started"
_QSFLOW_ROOT = Path(__file__).resolve().parent.parent
_ALIAS_DIR = _QSFLOW_ROOT / "serverless_compat" / "_alias"


# Ray turns a node address of 127.0.0.1 into the machine's outward address (for multi-node clusters).
# The local head is one node: this setting keeps it, and the drivers joining it, on 127.0.0.1. It must
# be in the environment before ``import ray``.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


# A job's log is what its program and tasks print, line for line: Ray forwards task output to the driver without
# folding repeated lines into "[repeated 3x across cluster]" and without terminal colours. Read at ``import ray``.
JOB_LOG_ENV = {"RAY_DEDUP_LOGS": "0", "RAY_COLOR_PREFIX": "0"}


def is_local(address: str) -> bool:
    """True for the local head's address (a single node on 127.0.0.1)."""
    return address.startswith("127.0.0.1:")


def driver_env(address: str) -> dict[str, str]:
    """Environment a job's Ray driver joining ``address`` needs: plain, complete task output in the job's log,
    and the loopback switch for the local head."""
    return {**JOB_LOG_ENV, **(LOOPBACK_ENV if is_local(address) else {})}


class RayClusterError(RuntimeError):
    """The local Ray head could not be started or reached; the message says where to look."""


def configured_address() -> Optional[str]:
    """The cluster address set with ``QSFLOW_RAY_ADDRESS``, or None for the local head."""
    return os.environ.get(ADDRESS_ENV) or None


def _state_file() -> Path:
    return home() / "ray.json"


def _log_file() -> Path:
    return home() / "ray.log"


def _temp_dir() -> Path:
    # Ray puts Unix sockets under its temp dir; their paths must stay short (< 108 bytes), so the
    # dir lives directly under /tmp, one per qsflow home.
    return Path("/tmp") / f"qsflow-ray-{home_digest()}"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def head_env(num_cpus: Optional[int] = None) -> dict[str, str]:
    """Environment of a head with ``num_cpus`` CPUs (default: the local head's) and so of its workers: qsflow and the
    ``qiskit_serverless`` alias importable, the warm workers' settings."""
    env = dict(os.environ)
    paths = [str(_ALIAS_DIR), str(_QSFLOW_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env.update(PYTHONPATH=os.pathsep.join(paths), RAY_USAGE_STATS_ENABLED="0")
    # with the warm pool: no starts beside it, a job's idle workers kept a minute (ray_warm_workers.head_env)
    for key, value in ray_warm_workers.head_env(num_cpus or _num_cpus()).items():
        env.setdefault(key, value)
    # Without the pool: each job's program is a new Ray driver, and Ray's workers belong to one driver: have the
    # raylet start a driver's workers as soon as it connects, not when its first task arrives.
    env.setdefault("RAY_enable_worker_prestart", "1")
    # Without it, Ray stops a driver's idle workers above one per CPU after 1 s: a program pausing 2 s between two
    # fan-outs of cpu=0.5 tasks had half its workers started again, each importing Prefect's task engine anew
    # (~1.5 s of CPU). Idle workers are kept 10 s; a job's workers still end with the job.
    env.setdefault("RAY_idle_worker_killing_time_threshold_ms", "10000")
    # Ray runs its workers at nice 15 (its worker_niceness). Here they share the machine with the job's program
    # and the Prefect server at nice 0, which records the task runs while they run: a fresh job's 49 tasks after
    # its first took 2.2-2.5 s with the workers mostly waiting for a core (~20 ms of CPU per 180 ms task), against
    # 0.7 s at nice 0 (probe of 50 cpu=0.5 tasks on the warm pool, 2 cores).
    env.setdefault("RAY_worker_niceness", "0")
    env.pop("RAY_ADDRESS", None)
    env.update(LOOPBACK_ENV)
    return env


def local_head_status() -> dict:
    """``{"address", "pid", "running": bool}`` of this home's local head (``running``: started and ready)."""
    state = read_state(_state_file())
    running = alive(state.get("pid")) and bool(state.get("port")) and _ready(state)
    return {**state, "running": running}


def _num_cpus() -> int:
    """CPUs of the local head: ``QSFLOW_RAY_NUM_CPUS``, else all cores."""
    return int(os.environ.get(NUM_CPUS_ENV) or os.cpu_count() or 1)


def head_command(port: int, temp_dir: Optional[Path] = None, num_cpus: Optional[int] = None,
                 node_manager_port: Optional[int] = None) -> list[str]:
    """``ray start --head --block`` on 127.0.0.1:``port`` (temp dir: this home's local head's unless given;
    CPUs: ``num_cpus``, else ``QSFLOW_RAY_NUM_CPUS``, else all cores; the raylet's port: ``node_manager_port``,
    else any)."""
    num_cpus = str(num_cpus or _num_cpus())
    command = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(port),
        "--ray-client-server-port", str(free_port()),
        "--dashboard-agent-listen-port", str(free_port()),
        "--dashboard-port", str(free_port()),
        # The dashboard (and with it Ray's state API: `ray list tasks`) only when asked: it costs memory and start time.
        "--include-dashboard", "true" if os.environ.get(DASHBOARD_ENV) == "1" else "false", "--disable-usage-stats",
        "--num-cpus", num_cpus,
        "--object-store-memory", os.environ.get(OBJECT_STORE_ENV) or str(512 * 1024 * 1024),
        "--temp-dir", str(temp_dir or _temp_dir()),
    ]
    if node_manager_port:
        command += ["--node-manager-port", str(node_manager_port)]
    resources = os.environ.get(RESOURCES_ENV)
    if resources:
        try:
            parsed = json.loads(resources)
        except json.JSONDecodeError as exc:
            raise RayClusterError(
                f"{RESOURCES_ENV}={resources!r} is not JSON; set it like '{{\"my_resource\": 4}}'."
            ) from exc
        command += ["--resources", json.dumps(parsed)]
    return command


def _spawn_head() -> dict:
    """Start ``ray start --head --block`` detached and record it; does not wait for it to be ready."""
    port, node_manager_port, num_cpus = free_port(), free_port(), _num_cpus()
    log_path = _log_file()
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            head_command(port, num_cpus=num_cpus, node_manager_port=node_manager_port), stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=head_env(num_cpus), start_new_session=True,
            cwd=str(home()),
        )
    state = {"address": f"127.0.0.1:{port}", "port": port, "pid": process.pid, "num_cpus": num_cpus,
             "node_manager_port": node_manager_port, "temp_dir": str(_temp_dir()), "log_offset": offset}
    write_state(_state_file(), state)
    return state


def _ready(state: dict) -> bool:
    try:
        with open(_log_file(), "rb") as log:
            log.seek(state.get("log_offset", 0))
            started = _READY_LINE.encode() in log.read()
    except FileNotFoundError:
        return False
    return started and _port_open(state["port"])


def _log_tail(state: dict, lines: int = 15) -> str:
    try:
        with open(_log_file(), "rb") as log:
            log.seek(state.get("log_offset", 0))
            return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def _wait_ready(state: dict, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _ready(state):
        if not alive(state.get("pid")):
            tail = _log_tail(state)
            _cleanup(state)
            raise RayClusterError(
                f"The local Ray head exited while starting; see {_log_file()}. "
                f"Or use an existing cluster: set {ADDRESS_ENV}=ray://HOST:10001. Its last output:\n{tail}"
            )
        if time.monotonic() > deadline:
            _cleanup(state)
            raise RayClusterError(
                f"The local Ray head did not start within {timeout:.0f} s; see {_log_file()}. "
                "Raise QSFLOW_RAY_START_TIMEOUT on a slow machine."
            )
        time.sleep(0.2)


def ensure_local_head(timeout: float = START_TIMEOUT, wait: bool = True) -> str:
    """Start this home's local Ray head unless it runs; return ``127.0.0.1:PORT``, once it is ready if ``wait``
    (without ``wait`` the address is known as soon as the head is spawned: a job that never uses Ray does not
    wait for a head that is still starting)."""
    with home_lock("ray.lock"):
        state = read_state(_state_file())
        if not alive(state.get("pid")):
            _cleanup(state)
            state = _spawn_head()
        if wait:
            _wait_ready(state, timeout)
        return state["address"]


def ready_address(address: str) -> str:
    """``address`` once usable: when it names this home's local head, wait until the head is ready (starting it
    again if it died meanwhile, under a new port: the address returned); any other address as it is."""
    if read_state(_state_file()).get("address") != address:
        return address
    return ensure_local_head()


def prestart_local_head() -> None:
    """Begin starting the local head in the background (no wait), unless a cluster address is configured.

    ``deployments.server.ensure_running()`` calls this so the head is warm by the first job; set
    ``QSFLOW_RAY_PRESTART=0`` to start it only when a job or script first needs it.
    """
    if configured_address() or os.environ.get("QSFLOW_RAY_PRESTART", "1") == "0":
        return
    with open(home() / "ray.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another process is starting or stopping the head right now
        try:
            state = read_state(_state_file())
            if not alive(state.get("pid")):
                _cleanup(state)
                _spawn_head()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def address(start: bool = True) -> Optional[str]:
    """The address drivers should connect to: ``QSFLOW_RAY_ADDRESS`` or the local head's.

    With ``start`` the local head is started if needed; without, None when it does not run.
    """
    configured = configured_address()
    if configured:
        return configured
    if start:
        return ensure_local_head()
    state = local_head_status()
    return state["address"] if state["running"] else None


def kill_session(temp_dir: Optional[str], session: Optional[int] = None) -> None:
    """SIGKILL every process left of the Ray session under ``temp_dir`` (see :func:`session_pids`)."""
    for pid in session_pids(temp_dir, session):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def session_pids(temp_dir: Optional[str], session: Optional[int] = None) -> list[int]:
    """Processes still running from a head's session (workers sit in their own process groups): their command
    line names ``temp_dir``, or they are in the Unix session ``session`` (the head's pid, its session leader).
    A worker renames itself (``ray::IDLE``) once it joined: one still importing as the head stops is found by
    its session alone."""
    if not temp_dir:
        return []
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        stat = stat_fields(int(proc.name))
        if not stat or stat[0] in ("Z", "X"):
            continue  # gone, or killed already and not yet reaped
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if temp_dir in cmdline or (session is not None and int(stat[3]) == session):
                pids.append(int(proc.name))
    return pids


def _cleanup(state: dict) -> None:
    # Ray drains for up to 30 s on SIGTERM; a local head holds nothing worth waiting that long for.
    terminate_group(state.get("pid"), grace=3.0)
    kill_session(state.get("temp_dir"), state.get("pid"))
    if state.get("temp_dir"):
        shutil.rmtree(state["temp_dir"], ignore_errors=True)
    _state_file().unlink(missing_ok=True)


def stop() -> bool:
    """Stop this home's local Ray head and everything it started; True if it was running."""
    with home_lock("ray.lock"):
        state = read_state(_state_file())
        was_running = alive(state.get("pid"))
        _cleanup(state)
        return was_running
