"""Isolated Python environments for programs that declare ``dependencies``.

Each distinct dependency list gets one virtual environment under ``<qsflow home>/envs/<hash>``,
created once with uv and reused by every later job asking for the same list. qsflow's own
packages stay visible to the program behind the environment's own, through a ``.pth`` file, so a
pinned package in the list (even ``qiskit-serverless`` itself) wins over qsflow's copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import site
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

from deployments.settings import home

ALIAS_DIR = Path(__file__).resolve().parent.parent / "serverless_compat" / "_alias"


class DependencyInstallError(RuntimeError):
    """Installing a program's dependencies failed; the message carries the installer's output."""


def environment_key(dependencies: list[str]) -> str:
    return hashlib.sha256(json.dumps(sorted(dependencies)).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise DependencyInstallError(
                "uv is needed to install program dependencies; install it with `pip install uv`."
            ) from None
        return found


def _host_paths() -> list[str]:
    """qsflow's own import paths (its site-packages and source root), for the environment's .pth."""
    paths = [*site.getsitepackages(), str(Path(__file__).resolve().parent.parent)]
    return [p for p in dict.fromkeys(paths) if Path(p).is_dir()]


def python_for(dependencies: list[str], log: Callable[[str], None]) -> str:
    """The interpreter to run a program with: qsflow's own, or a cached environment with its deps."""
    if not dependencies:
        return sys.executable
    env_dir = home() / "envs" / environment_key(dependencies)
    python = env_dir / "bin" / "python"
    ready = env_dir / ".qsflow-ready"
    if ready.exists():
        return str(python)
    with _locked(env_dir.with_suffix(".lock")):
        if ready.exists():
            return str(python)
        shutil.rmtree(env_dir, ignore_errors=True)
        log(f"Installing dependencies into a new environment: {', '.join(dependencies)}")
        uv = _uv()
        try:
            _run([uv, "venv", "--quiet", "--python", sys.executable, str(env_dir)], log)
            _run([uv, "pip", "install", "--compile-bytecode", "--python", str(python), *dependencies], log)
        except DependencyInstallError:
            shutil.rmtree(env_dir, ignore_errors=True)
            raise
        site_packages = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        # Appended after the environment's own site-packages: pinned packages win, the shim comes last.
        (Path(site_packages) / "qsflow_host.pth").write_text("\n".join([*_host_paths(), str(ALIAS_DIR)]) + "\n")
        ready.touch()
    return str(python)


def _run(args: list[str], log: Callable[[str], None]) -> None:
    process = subprocess.run(args, capture_output=True, text=True)
    output = (process.stdout + process.stderr).strip()
    for line in output.splitlines():
        log(line)
    if process.returncode != 0:
        raise DependencyInstallError(
            f"Installing the program's dependencies failed (exit code {process.returncode}):\n{output}\n"
            "Fix the `dependencies` of the function and upload it again."
        )
