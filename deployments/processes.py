"""Small process helpers shared by the services qsflow starts itself (Prefect server, worker, Ray head)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Iterator, Optional

from deployments.settings import home


@contextlib.contextmanager
def home_lock(name: str) -> Iterator[None]:
    """An exclusive lock on ``<qsflow home>/<name>``, shared by every process using that home."""
    with open(home() / name, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def alive(pid: Optional[int]) -> bool:
    """True while process ``pid`` runs (a zombie, or a reaped child of ours, is not running)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    fields = stat_fields(pid)
    return not fields or fields[0] != "Z"


def stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent pid, ...; ``man 5 proc`` numbers
    them from 3); empty if the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def parent(pid: int) -> Optional[int]:
    """The parent of process ``pid``, None if it is gone."""
    fields = stat_fields(pid)
    return int(fields[1]) if fields else None


def output_reader(pid: int) -> Optional[int]:
    """The other process holding process ``pid``'s stdout pipe (a job's runner, which streams its program's output:
    the program's parent may be the worker's program zygote), None if there is none."""
    try:
        pipe = os.readlink(f"/proc/{pid}/fd/1")
    except OSError:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == pid:
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == pipe:
                        return int(proc.name)
    return None


def descendants(pid: int) -> list[int]:
    """Every live process under ``pid`` (children, their children, ...), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            above = parent(int(proc.name))
            if above is not None:
                children.setdefault(above, []).append(int(proc.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def terminate_group(pid: Optional[int], grace: float, first: signal.Signals = signal.SIGTERM,
                    leader_first: bool = False) -> None:
    """Stop the process group led by ``pid``: ``first`` (SIGTERM) to the group, or to the leader alone with
    ``leader_first`` (a server that stops its own children), then SIGKILL to the group after ``grace`` seconds."""
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        if leader_first:
            os.kill(pid, first)
        else:
            os.killpg(pid, first)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_state(path: Path, state: dict) -> None:
    """Replace ``path`` with ``state`` as JSON, atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)
