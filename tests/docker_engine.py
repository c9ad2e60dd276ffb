"""A private Docker engine for the image-function tests, and a test image built from local files.

No registry is reachable here, so the test image is ``docker import`` of a root filesystem made on
this machine: Debian's own ``python3`` with its standard library, the shared libraries every
interpreter and compiled module qsflow runs need (found with ``ldd``), a ``/runner/runner.py`` in
Qiskit Serverless's custom-image layout, and one module only the image has. qsflow itself (its
checkout, virtual environment and base interpreter) is not copied: the Docker work pool bind-mounts
it read-only, as it does for any image (``deployments.images``).

The engine is ``dockerd`` with its own socket, data root and exec root under a temporary directory,
no bridge and no iptables (containers use the host's loopback network), stopped by pid at the end.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

START_TIMEOUT = 60.0


@dataclass
class Engine:
    host: str            # DOCKER_HOST value: unix:///.../docker.sock
    pid: int
    root: Path
    log: Path

    def docker(self, *args: str, input: Optional[bytes] = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.host, *args], input=input, capture_output=True, check=check)

    def stop(self) -> None:
        """Stop dockerd (it stops its containers and containerd) and remove its data."""
        from deployments.processes import terminate_group

        containers = self.docker("ps", "-aq", check=False).stdout.split()
        if containers:
            self.docker("rm", "-f", *[c.decode() for c in containers], check=False)
        terminate_group(self.pid, grace=30.0)
        for mounted in ("data", "exec/netns/default", "exec"):  # dockerd leaves its netns mounted
            subprocess.run(["umount", "-R", str(self.root / mounted)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def unavailable_reason() -> Optional[str]:
    """Why no private Docker engine can be started here, or None when it can be tried."""
    if not shutil.which("dockerd") or not shutil.which("docker"):
        return ("Docker is not installed (no dockerd/docker on PATH). Install Debian's docker.io "
                "(`bash scripts/docker.sh` as root) to run the image-function tests.")
    if os.geteuid() != 0:
        return "dockerd needs root; run the image-function tests as root."
    return None


def start_engine() -> Engine:
    """Start a private dockerd (loopback only) and wait until it answers."""
    # Short path: containerd's sockets live under the exec root and must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="qsdk-", dir="/tmp"))
    sock = root / "docker.sock"
    log = root / "dockerd.log"
    args = ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
            "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "dockerd.pid"), "-H", f"unix://{sock}"]
    driver = os.environ.get("QSFLOW_DOCKER_STORAGE_DRIVER")
    if driver:
        args += ["--storage-driver", driver]
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    engine = Engine(host=f"unix://{sock}", pid=process.pid, root=root, log=log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace")[-3000:]
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"dockerd exited with code {process.returncode}:\n{text}")
        if sock.exists() and engine.docker("version", check=False).returncode == 0:
            return engine
        time.sleep(0.3)
    engine.stop()
    raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT:.0f} s; see {log}")


# -- the test image --------------------------------------------------------------------------------

def _elf_files(roots: Iterable[Path]) -> list[Path]:
    found = []
    for root in roots:
        if root.is_file():
            found.append(root)
            continue
        for path in root.rglob("*.so*"):
            if path.is_file() and not path.is_symlink():
                found.append(path)
    return found


def _needed_libraries(binaries: list[Path]) -> set[str]:
    """Every shared library (absolute path as the loader finds it) the binaries load, via ldd."""
    needed: set[str] = set()
    chunk = 200
    for start in range(0, len(binaries), chunk):
        out = subprocess.run(["ldd", *map(str, binaries[start:start + chunk])],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            line = line.strip()
            if "=>" in line:
                target = line.split("=>", 1)[1].split("(")[0].strip()
                if target.startswith("/"):
                    needed.add(target)
            elif line.startswith("/") and "(" in line:
                needed.add(line.split("(")[0].strip())
    return needed


class _RootFs:
    """A root filesystem tar written once per path, parent directories created as needed."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        self.names: set[str] = set()

    def _new(self, name: str) -> Optional[str]:
        name = name.strip("/")
        if name in self.names:
            return None
        parts = Path(name).parts
        for i in range(1, len(parts)):
            self.dir("/".join(parts[:i]))
        self.names.add(name)
        return name

    def dir(self, name: str, mode: int = 0o755) -> None:
        name = self._new(name)
        if name:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            self.tar.addfile(info)

    def link(self, name: str, target: str) -> None:
        name = self._new(name)
        if name:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            self.tar.addfile(info)

    def text(self, name: str, text: str, mode: int = 0o644) -> None:
        name = self._new(name)
        if name:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            self.tar.addfile(info, io.BytesIO(data))

    def copy(self, source: str, name: str) -> None:
        name = self._new(name)
        if name:
            real = os.path.realpath(source)
            info = self.tar.gettarinfo(real, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(real, "rb") as handle:
                self.tar.addfile(info, handle)


def image_python() -> Path:
    """The Debian interpreter the test image holds as its own ``python3``."""
    return Path("/usr/bin/python3.11")


def rootfs_tar(files: dict[str, str], path: Path) -> Path:
    """Write the test image's root filesystem to ``path``; ``files`` adds ``{path in image: text}``."""
    python = image_python()
    stdlib = Path(f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}")
    # Everything that may be loaded in a container: the image's interpreter and its modules, and
    # qsflow's mounted interpreter, libpython and compiled packages (they need the image's libc...).
    from deployments.images import runtime_mounts

    mounted = tuple(volume.split(":")[0] + "/" for volume in runtime_mounts())
    libpython = Path(sysconfig.get_config_var("LIBDIR") or "/", sysconfig.get_config_var("INSTSONAME") or "-")
    binaries = _elf_files([python, stdlib / "lib-dynload", Path(sys.executable).resolve(),
                           *([libpython] if libpython.is_file() else []),
                           Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
                           / "lib-dynload", Path(sys.prefix)])
    libraries = _needed_libraries(binaries)
    skip_dirs = {"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip"}
    with tarfile.open(path, "w") as tar:
        fs = _RootFs(tar)
        for link, target in {"/bin": "usr/bin", "/lib": "usr/lib", "/lib64": "usr/lib64", "/sbin": "usr/bin"}.items():
            fs.link(link, target)
        for directory in ["/usr/lib/x86_64-linux-gnu", "/etc", "/root", "/usr/lib/python3/dist-packages"]:
            fs.dir(directory)
        fs.dir("/tmp", 0o1777)
        fs.copy(str(python), "/usr/bin/python3.11")
        fs.link("/usr/bin/python3", "python3.11")
        fs.link("/usr/bin/python", "python3.11")
        for lib in sorted(libraries):
            if lib.startswith(mounted):
                continue  # qsflow's own files come from the pool's mounts
            # merged /usr: /lib/x86_64-linux-gnu/x is /usr/lib/x86_64-linux-gnu/x in the image
            fs.copy(lib, "/usr" + lib if lib.startswith(("/lib/", "/lib64/")) else lib)
        for item in sorted(stdlib.rglob("*")):
            rel = item.relative_to(stdlib)
            if rel.parts[0] in skip_dirs or "site-packages" in rel.parts or "dist-packages" in rel.parts:
                continue
            if item.is_symlink():
                fs.link(str(item), os.readlink(item))
            elif item.is_dir():
                fs.dir(str(item))
            else:
                fs.copy(str(item), str(item))
        fs.text("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
        fs.text("/etc/group", "root:x:0:\n")
        for name, text in files.items():
            fs.text(name, text)
    return path


def build_image(engine: Engine, tag: str, files: dict[str, str]) -> float:
    """``docker import`` the test root filesystem as ``tag``; returns the seconds it took."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tar = rootfs_tar(files, Path(tmp) / "rootfs.tar")
        engine.docker("import", "--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin", "--change", "WORKDIR /",
                      str(tar), tag)
    return time.monotonic() - started
