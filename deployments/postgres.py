"""A private PostgreSQL server for the local cluster: ``initdb`` into a directory, listening on 127.0.0.1 only.

The binaries are Debian's (``apt-get install postgresql``, ``scripts/postgres.sh``): ``initdb``/``postgres`` on
PATH or under ``/usr/lib/postgresql/<version>/bin``. PostgreSQL refuses to run as root; as root the server runs as
the ``postgres`` user the Debian package creates. Access is by password (scram-sha-256), over TCP only.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from deployments.processes import alive, free_port, terminate_group

DATABASE = "prefect"
USER = "qsflow"
_SERVICE_USER = "postgres"


class PostgresMissing(RuntimeError):
    """PostgreSQL's server binaries are not installed; the message names the fix."""


def bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres`` (newest Debian version first, then PATH)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PostgresMissing(
        "PostgreSQL is not installed (no initdb on PATH or under /usr/lib/postgresql/*/bin). "
        "Install it: `bash scripts/postgres.sh` (Debian's `apt-get install postgresql`)."
    )


def _run_as() -> Optional[str]:
    """The user the server must run as: None (this one) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SERVICE_USER)
    except KeyError:
        raise PostgresMissing(
            "PostgreSQL cannot run as root and there is no 'postgres' user to run it as; install Debian's "
            "postgresql package (it creates that user) or run as an ordinary user."
        ) from None
    return _SERVICE_USER


@dataclass
class Postgres:
    """A running server: its postmaster's pid, its port and the connection URL for Prefect."""

    pid: int
    port: int
    password: str
    data_dir: str

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"


def start(directory: Path, log_path: Path, timeout: float = 60.0) -> Postgres:
    """``initdb`` a new cluster in ``directory`` (must not exist), start it on a free loopback port, create the
    ``prefect`` database; return it once it accepts connections."""
    binaries = bin_dir()
    user = _run_as()
    directory.mkdir(parents=True)
    directory.chmod(0o700)
    password = secrets.token_hex(16)
    pwfile = directory.parent / f".{directory.name}.pw"
    pwfile.write_text(password + "\n")
    if user:
        entry = pwd.getpwnam(user)
        for path in (directory, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    try:
        _checked([str(binaries / "initdb"), "-D", str(directory), "-U", USER, "--pwfile", str(pwfile),
                  "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C"], user, log_path)
    finally:
        pwfile.unlink(missing_ok=True)
    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [str(binaries / "postgres"), "-D", str(directory), "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
             "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, user=user,
            start_new_session=True, cwd=str(directory),
        )
    server = Postgres(pid=process.pid, port=port, password=password, data_dir=str(directory))
    deadline = time.monotonic() + timeout
    while not _accepts(port):
        if not alive(process.pid) or time.monotonic() > deadline:
            stop(server.pid)
            raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{port}; see {log_path}.")
        time.sleep(0.2)
    _create_database(binaries, port, password, user, log_path, deadline)
    return server


def _checked(command: list[str], user: Optional[str], log_path: Path, env: Optional[dict] = None) -> None:
    with open(log_path, "ab") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                user=user, env=env, cwd="/")
    if result.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} failed (exit code {result.returncode}); see {log_path}.")


def _create_database(binaries: Path, port: int, password: str, user: Optional[str], log_path: Path,
                     deadline: float) -> None:
    env = {**os.environ, "PGPASSWORD": password}
    command = [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE]
    while True:  # the port may answer a moment before the server accepts logins
        try:
            _checked(command, user, log_path, env)
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop(pid: Optional[int], grace: float = 20.0) -> None:
    """Stop the postmaster ``pid`` with a fast shutdown (SIGINT: sessions are ended), SIGKILL after ``grace``."""
    terminate_group(pid, grace, first=signal.SIGINT, leader_first=True)
