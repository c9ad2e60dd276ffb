"""``/data`` and ``/function_data`` inside a job, as Qiskit Serverless programs expect them.

The job's data scopes (see ``deployments.data_files``) become directories on this machine: the
store's own folders when it is a local directory, or staging copies in the job directory when it
is remote (S3), uploaded back when the program ends, also on error. The program then runs in a
private mount namespace (util-linux ``unshare --mount``) where those directories are bind-mounted
at ``/data`` and ``/function_data``; nothing outside the job sees the mounts. In a job's own
container (an image function, ``QSFLOW_IN_CONTAINER``) ``/data`` and ``/function_data`` are
symbolic links to them instead. Where neither is possible (not root, no ``unshare``),
``DATA_PATH`` alone points at the directory.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from blocks.storage import QsflowStore
from deployments import data_files
from deployments.access import Principal

DATA_MOUNT = "/data"
FUNCTION_DATA_MOUNT = "/function_data"
IN_CONTAINER_ENV = "QSFLOW_IN_CONTAINER"  # set by the Docker work pool of image functions

# sh -c SCRIPT qsflow-mount OP... -- COMMAND...: apply each OP in order, then exec the command.
# OPs: "bind SRC DST" (bind-mount SRC at DST) and "hide DIR" (an empty tmpfs over DIR).
_MOUNT_SCRIPT = (
    'set -e; while [ "$1" != "--" ]; do case "$1" in '
    'bind) mkdir -p "$3"; mount --bind "$2" "$3"; shift 3;; '
    'hide) mount -t tmpfs -o size=1m,mode=0755 qsflow-hidden "$2"; shift 2;; '
    '*) echo "qsflow-mount: unknown operation $1" >&2; exit 2;; esac; done; '
    'shift; exec "$@"'
)


@functools.cache
def mount_namespaces_available() -> bool:
    """True when this process may give a child a private mount namespace with bind mounts."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("mount"):
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


@dataclass
class _Staged:
    scope: data_files.Scope
    local: Path
    remote: bool
    before: dict[str, tuple[int, int]] = field(default_factory=dict)


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir() if p.is_file()}


@dataclass
class JobData:
    """Where the job's data lives and how to start its program so that it sees it."""

    data_dir: Path
    function_data_dir: Optional[Path]
    mounted: bool
    linked: bool = False  # /data and /function_data are links in the job's own container
    store_data_root: Optional[Path] = None  # a local store's data folder: hidden but for the job's own scopes

    def env(self) -> dict[str, str]:
        if self.mounted or self.linked:
            env = {"DATA_PATH": DATA_MOUNT}
            if self.function_data_dir is not None:
                env["FUNCTION_DATA_PATH"] = FUNCTION_DATA_MOUNT
            return env
        env = {"DATA_PATH": str(self.data_dir)}
        if self.function_data_dir is not None:
            env["FUNCTION_DATA_PATH"] = str(self.function_data_dir)
        return env

    def mount_setup(self) -> Optional[list[str]]:
        """The command that, run in the program's own private mount namespace, mounts its data directories;
        the program's command follows it (``sh -c SCRIPT qsflow-mount OP... --``). None when not mounted.
        ``deployments.program_zygote.start`` runs it so (after ``unshare --mount``, or in a forked program's own)."""
        if not self.mounted:
            return None
        mounts = {DATA_MOUNT: self.data_dir}
        if self.function_data_dir is not None:
            mounts[FUNCTION_DATA_MOUNT] = self.function_data_dir
        ops = [arg for target, source in mounts.items() for arg in ("bind", str(source), target)]
        root = self.store_data_root
        if root is not None and all(Path(p).resolve().is_relative_to(root) for p in mounts.values()):
            # Other users' and functions' files stay out of reach by their real paths too: the store's
            # data folder is an empty tmpfs, with only the job's own scopes bound back in place.
            ops += ["hide", str(root)]
            ops += [arg for target, source in mounts.items() for arg in ("bind", target, str(Path(source).resolve()))]
        return ["sh", "-c", _MOUNT_SCRIPT, "qsflow-mount", *ops, "--"]


@contextlib.contextmanager
def job_data(store: QsflowStore, user: str, full_title: str, job_dir: Path,
             log: Callable[[str], None]) -> Iterator[JobData]:
    """Prepare the job's data directories; on exit, upload what a remote store needs back."""
    principal = Principal(user=user, providers=frozenset(), job_function=full_title)
    scopes = [data_files.user_scope(principal, full_title)]
    if "/" in full_title:
        scopes.append(data_files.provider_scope(principal, full_title))
    staged = []
    for scope in scopes:
        local = store.local_path(scope.folder)
        if local is not None:
            Path(local).mkdir(parents=True, exist_ok=True)
            staged.append(_Staged(scope, Path(local), remote=False))
            continue
        target = job_dir / "staged" / scope.kind
        target.mkdir(parents=True, exist_ok=True)
        for name in store.list_files(scope.folder):
            store.download_to(f"{scope.folder}/{name}", str(target / name))
        staged.append(_Staged(scope, target, remote=True, before=_snapshot(target)))
    linked = os.environ.get(IN_CONTAINER_ENV) == "1" and _link_in_container(
        [(staged[0].local, DATA_MOUNT)] + ([(staged[1].local, FUNCTION_DATA_MOUNT)] if len(staged) > 1 else []))
    mounted = not linked and mount_namespaces_available()
    if not mounted and not linked:
        log(f"/data is not available in this job (no private mount namespace here: needs root and "
            f"util-linux unshare); the program's data directory is DATA_PATH={staged[0].local}.")
    try:
        local_root = store.local_path("data")
        yield JobData(staged[0].local, staged[1].local if len(staged) > 1 else None, mounted, linked,
                      store_data_root=Path(local_root).resolve() if local_root else None)
    finally:
        for item in staged:
            if item.remote:
                _stage_out(store, item, log)


def _link_in_container(pairs: list[tuple[Path, str]]) -> bool:
    """In a container that is the job's alone: make each target path a link to its directory."""
    try:
        for source, target in pairs:
            path = Path(target)
            if path.is_symlink():
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()  # an image's empty mount point
            path.symlink_to(source, target_is_directory=True)
    except OSError:
        return False
    return True


def _stage_out(store: QsflowStore, item: _Staged, log: Callable[[str], None]) -> None:
    for name, stat in _snapshot(item.local).items():
        if item.before.get(name) == stat:
            continue
        try:
            data_files.validate_name(name)
        except ValueError as exc:
            log(f"Not uploading {name!r} from the job's data directory: {exc}")
            continue
        size = store.upload_file(f"{item.scope.folder}/{name}", str(item.local / name))
        data_files.emit("qsflow.file.uploaded", item.scope, name, size)
