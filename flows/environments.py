"""Isolated Python environments for programs that declare ``dependencies``.

Each distinct dependency list gets one virtual environment under ``<qsflow home>/envs/<hash>``,
created once with uv and reused by every later job asking for the same list. qsflow's own
packages stay visible to the program behind the environment's own, through a ``.pth`` file, so a
pinned package in the list (even ``qiskit-serverless`` itself) wins over qsflow's copy. A list
pinning a real ``qiskit-serverless`` release resolves as of that release's date
(``flows.pinned_releases``). What the runner needs to know about an environment (the QPY version its
Qiskit reads) is kept next to it in ``.qsflow-env.json``.
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
from flows.pinned_releases import install_options

ALIAS_DIR = Path(__file__).resolve().parent.parent / "serverless_compat" / "_alias"


class DependencyInstallError(RuntimeError):
    """Installing a program's dependencies failed; the message carries the installer's output."""


def environment_key(dependencies: list[str]) -> str:
    """One environment per dependency list and the way it is installed."""
    options, extra = install_options(dependencies)
    recipe = [sorted(dependencies), options, extra] if options or extra else sorted(dependencies)
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]


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
        options, extra = install_options(dependencies)
        if options or extra:
            log(f"Resolving as of the pinned qiskit-serverless release: {' '.join([*options, *extra])}")
        uv = _uv()
        try:
            _run([uv, "venv", "--quiet", "--python", sys.executable, str(env_dir)], log)
            _run([uv, "pip", "install", "--compile-bytecode", "--python", str(python), *options,
                  *dependencies, *extra], log)
        except DependencyInstallError:
            shutil.rmtree(env_dir, ignore_errors=True)
            raise
        site_packages = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        # Appended after the environment's own site-packages: pinned packages win, the shim comes last.
        (Path(site_packages) / "qsflow_host.pth").write_text("\n".join([*_host_paths(), str(ALIAS_DIR)]) + "\n")
        _write_info(env_dir, python)
        ready.touch()
    return str(python)


_INFO = ".qsflow-env.json"
_PROBE = (
    "import json, importlib.metadata as m\n"
    "try:\n    import qiskit.qpy as q; qpy = q.QPY_VERSION\nexcept Exception:\n    qpy = None\n"
    "try:\n    release = m.version('qiskit-serverless')\nexcept m.PackageNotFoundError:\n    release = None\n"
    "print(json.dumps({'qpy_version': qpy, 'qiskit_serverless': release}))"
)


def _write_info(env_dir: Path, python: Path) -> dict:
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True)
    if probe.returncode != 0:
        raise DependencyInstallError(
            f"The new environment's Python does not start:\n{probe.stderr.strip()}\n"
            "Fix the `dependencies` of the function and upload it again."
        )
    info = json.loads(probe.stdout.strip().splitlines()[-1])
    (env_dir / _INFO).write_text(json.dumps(info))
    return info


def environment_info(python: str) -> dict:
    """What the runner knows of the environment of ``python``: ``qpy_version`` (the newest QPY format
    its Qiskit reads) and ``qiskit_serverless`` (the installed release, None for the shim).
    Empty for qsflow's own interpreter."""
    if python == sys.executable:
        return {}
    env_dir = Path(python).parent.parent
    try:
        return json.loads((env_dir / _INFO).read_text())
    except (OSError, ValueError):
        with _locked(env_dir.with_suffix(".lock")):  # an environment made before this file existed
            return _write_info(env_dir, Path(python))


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
