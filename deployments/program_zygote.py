"""The program zygote: job programs forked from a process that imported Ray, Prefect and Qiskit once.

A job's program is a ``python main.py`` of its own (``flows.runner``). Its first distributed call imports Ray,
Prefect and prefect-ray (1.2-1.3 s of CPU on this 2-core VM), and a Qiskit program imports Qiskit and
qiskit-ibm-runtime (~1 s more), in every job. The warm worker (:mod:`deployments.warm_worker`) starts this zygote
next to itself; a runner then asks it for the program's process (:func:`start`), which it forks with those
libraries already loaded (:data:`PRELOAD`, third-party only: qsflow's own modules read the job's environment when
imported, so the program imports them itself).

The forked process is made to be what ``python main.py`` would be: its own process group; stdin ``/dev/null``,
stdout and stderr the runner's pipe; the job's working directory, environment, ``sys.argv`` and ``sys.path``
(the script's folder, the job's ``PYTHONPATH``, the interpreter's own); a private mount namespace with the job's
``/data`` when the runner mounts it (:meth:`flows.data_mounts.JobData.mount_setup`); fresh random seeds; the
program run as ``__main__``, an uncaught exception printed as Python prints it (exit code 1); non-daemon threads
joined and ``atexit`` handlers run at its end. It ``exec``\\ s a fresh interpreter instead (same process, same
setup) when forking could differ from that: a variable read when the preloaded libraries were imported
(:data:`IMPORT_TIME_PREFIXES`) differs from the zygote's, or the program's folder holds a module of a preloaded
name. The runner kills the program's group as before; the zygote kills it when the runner goes away, and a program
dies with the zygote. Once its worker is gone (killed alone: its jobs run on) the zygote takes no more programs and
leaves after the last.

What still tells a forked program apart: its parent is the zygote; Ray, Prefect and Qiskit are in ``sys.modules``
before it imports them (with what importing them set: their warning filters, their loggers); its string hashes are
seeded as the zygote's; and at its end objects it still holds are not torn down (their ``__del__`` does not run,
which Python does not promise either; its open files are flushed).

``QSFLOW_PROGRAM_ZYGOTE=0`` turns it off (the worker then starts none). Protocol, one connection per program:
the runner sends a 4-byte length with its stdout pipe's write end (``SCM_RIGHTS``), then that many bytes of JSON
(``command``, ``cwd``, ``env``, ``mount_setup``); the zygote answers the program's pid, later its exit status
(``subprocess``'s ``returncode`` convention), each a 4-byte signed integer.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import json
import os
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

SOCKET_ENV = "QSFLOW_PROGRAM_ZYGOTE"  # the socket path the worker's runs use; "0" turns the zygote off
# Imported once; each forked program starts with them loaded.
PRELOAD = ["ray", "prefect.flows", "prefect.task_engine", "prefect_ray.task_runners", "prefect_ray.context",
           "qiskit", "qiskit.transpiler", "qiskit_ibm_runtime",
           # what ray.shutdown imports: Ray registers it to run at the end of every program that imported Ray,
           # whether or not it joined a cluster (~18 ms of a trivial program's ~60 ms of CPU here)
           "ray.dag.compiled_dag_node"]
# Variables a preloaded library reads when it is imported (Prefect's settings, Ray's constants, Qiskit's user
# config, the interpreter's own, the BLAS thread pools): a program whose value differs is exec'd fresh.
IMPORT_TIME_PREFIXES = ("PREFECT_", "RAY_", "QISKIT", "PYTHON", "OMP_", "OPENBLAS_", "MKL_", "RAYON_", "LD_")
# ... except these, read when used: the cluster a driver joins, the path (rebuilt per program), Prefect's
# per-run engine variables.
CALL_TIME = ("RAY_ADDRESS", "PYTHONPATH")
START_TIMEOUT_S = 30.0  # the longest a runner waits for the zygote to fork its program, then starts it itself
_INT = struct.Struct("!i")
_CLONE_NEWNS, _MS_REC, _MS_PRIVATE, _PR_SET_PDEATHSIG = 0x00020000, 16384, 1 << 18, 1


def socket_path(worker: int) -> str:
    """Where the zygote of the worker ``worker`` (a pid) listens: in the qsflow home, one per worker, as several may
    share a home. Only its user may connect (a connection runs code as that user)."""
    from deployments.settings import home, home_digest

    path = home() / f"program-zygote-{worker}.sock"
    if len(str(path)) < 100:  # a Unix socket's path must stay under 108 bytes
        return str(path)
    return f"/tmp/qsflow-zygote-{home_digest()}-{worker}.sock"


def enabled() -> bool:
    return os.environ.get(SOCKET_ENV) != "0"


def listening(path: str) -> bool:
    """Whether a zygote takes programs at ``path`` now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def wait_until_listening(process: subprocess.Popen, path: str, timeout: float = 120.0) -> bool:
    """Wait until the zygote ``process`` takes programs at ``path``; False if it ended or took too long."""
    deadline = time.monotonic() + timeout
    while not listening(path):
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def import_time_variables(env: Any) -> dict[str, str]:
    return {k: v for k, v in env.items()
            if k.startswith(IMPORT_TIME_PREFIXES) and k not in CALL_TIME and not k.startswith("PREFECT__")}


# --- the runner's side -------------------------------------------------------------------------------------------

class ZygoteUnavailable(OSError):
    """The zygote is not running (yet) or refused the request: start the program as a plain subprocess."""


class ForkedProgram:
    """A program the zygote started: the parts of ``subprocess.Popen`` the runner uses."""

    def __init__(self, path: str, command: list[str], cwd: Path, env: dict[str, str],
                 mount_setup: Optional[list[str]]) -> None:
        self.returncode: Optional[int] = None
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        read_end, write_end = os.pipe()
        try:
            # a zygote that does not answer in time kills the program it forks later (its runner is gone)
            self._conn.settimeout(START_TIMEOUT_S)
            self._conn.connect(path)
            payload = json.dumps({"command": command, "cwd": str(cwd), "env": env,
                                  "mount_setup": mount_setup}).encode()
            socket.send_fds(self._conn, [_INT.pack(len(payload))], [write_end])
            self._conn.sendall(payload)
            self.pid = _receive_int(self._conn)
            self._conn.settimeout(None)
        except OSError as exc:
            self._conn.close()
            os.close(read_end)
            raise ZygoteUnavailable(f"the program zygote at {path} did not start the program: {exc}") from exc
        finally:
            os.close(write_end)
        self.stdout = io.open(read_end, "r", errors="replace")

    def poll(self) -> Optional[int]:
        if self.returncode is None and not select.select([self._conn], [], [], 0)[0]:
            return None  # the zygote sends the status in one piece once the program has ended
        return self.wait()

    def wait(self) -> int:
        if self.returncode is None:
            try:
                self.returncode = _receive_int(self._conn)
            except OSError:  # the zygote died: so did its programs (PR_SET_PDEATHSIG)
                self.returncode = -signal.SIGKILL
            self._conn.close()
        return self.returncode


def start(command: list[str], cwd: Path, env: dict[str, str], mount_setup: Optional[list[str]]) -> Any:
    """The program's process: forked by this worker's zygote when there is one and ``command`` runs qsflow's own
    interpreter, else ``subprocess.Popen`` (in a private mount namespace when ``mount_setup`` is given)."""
    path = os.environ.get(SOCKET_ENV)
    if enabled() and path and command[0] == sys.executable:
        with contextlib.suppress(ZygoteUnavailable):
            return ForkedProgram(path, command, cwd, env, mount_setup)
    if mount_setup is not None:
        command = ["unshare", "--mount", "--propagation", "private", *mount_setup, *command]
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        start_new_session=True, preexec_fn=die_with_parent,
    )


def die_with_parent() -> None:
    """In a child: receive SIGKILL when its parent dies, so no program outlives its runner (or zygote)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _receive_exactly(conn: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``conn``; ConnectionError if the other side closes first."""
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the connection closed early")
        data += chunk
    return data


def _receive_int(conn: socket.socket) -> int:
    return _INT.unpack(_receive_exactly(conn, _INT.size))[0]


# --- the worker's side --------------------------------------------------------------------------------------------

def launch(path: str, env: dict[str, str]) -> subprocess.Popen:
    """Start the zygote listening at ``path`` with ``env`` (a job's environment but for its own variables); it
    exits with this process."""
    return subprocess.Popen([sys.executable, "-m", "deployments.program_zygote", path, str(os.getpid())],
                            env=env, cwd=str(Path(__file__).resolve().parent.parent), stdin=subprocess.DEVNULL)


# --- the zygote ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Loaded:
    """What the zygote imported, and what a program forked from it must match to be run in it."""

    base_path: list[str]  # the interpreter's own sys.path (a program's folder and PYTHONPATH go before)
    variables: list[dict[str, str]]  # the import-time variables it was imported with (before, after the imports)
    import_effects: dict[str, str]  # what the imports set in the environment
    names: frozenset[str]  # top-level modules loaded


def _serve(listener: socket.socket, worker: int, loaded: _Loaded) -> str:
    """Fork a program per request; once the worker is gone, take no more and end with the last program (a job
    outlives its worker killed alone, as Prefect's runs do). Returns only in a forked child, ready to run: the
    program's path."""
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    worker_fd = os.pidfd_open(worker)
    selector.register(worker_fd, selectors.EVENT_READ, "worker")
    children: dict[int, tuple[Optional[socket.socket], int]] = {}  # pid -> (its runner's connection, its pidfd)
    while True:
        for key, _ in selector.select():
            if key.data == "worker":
                selector.unregister(worker_fd)
                os.close(worker_fd)
                selector.unregister(listener)
                listener.close()
                worker_fd = -1
                continue
            if key.data is None:
                if worker_fd < 0:  # closed in this round
                    continue
                conn, _ = listener.accept()
                try:
                    request, fds = _receive_request(conn)
                except EOFError:
                    conn.close()
                    continue
                except (OSError, ValueError) as exc:
                    print(f"qsflow program zygote: bad request ({exc})", file=sys.stderr, flush=True)
                    conn.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    listener.close()
                    if worker_fd >= 0:
                        os.close(worker_fd)
                    for other, pidfd in children.values():
                        if other is not None:
                            other.close()
                        os.close(pidfd)
                    conn.close()
                    return _become_program(request, fds[0], loaded)
                with contextlib.suppress(OSError):
                    os.setpgid(pid, pid)  # the child does too: the runner may kill its group at once
                for fd in fds:
                    os.close(fd)
                with contextlib.suppress(OSError):
                    conn.sendall(_INT.pack(pid))
                pidfd = os.pidfd_open(pid)
                children[pid] = (conn, pidfd)
                selector.register(pidfd, selectors.EVENT_READ, ("exited", pid))
                selector.register(conn, selectors.EVENT_READ, ("runner", pid))
                continue
            event, pid = key.data
            if pid not in children or (event == "runner" and children[pid][0] is None):
                continue  # ended, or its connection closed, earlier in this round
            conn, pidfd = children[pid]
            if event == "runner":  # the runner sent nothing more to read: it closed, or died
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                selector.unregister(conn)
                conn.close()
                children[pid] = (None, pidfd)
            else:
                _, status = os.waitpid(pid, 0)
                selector.unregister(pidfd)
                os.close(pidfd)
                if conn is not None:
                    selector.unregister(conn)
                    with contextlib.suppress(OSError):
                        conn.sendall(_INT.pack(os.waitstatus_to_exitcode(status)))
                    conn.close()
                del children[pid]
        if worker_fd < 0 and not children:
            raise SystemExit(0)


def _receive_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    conn.settimeout(10)
    header, fds, _, _ = socket.recv_fds(conn, _INT.size, 1)
    if not header and not fds:
        raise EOFError  # a probe (wait_until_listening): connected, sent nothing
    if len(header) != _INT.size or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise ValueError("expected a length and one file descriptor")
    try:
        payload = _receive_exactly(conn, _INT.unpack(header)[0])
    except ConnectionError:
        os.close(fds[0])
        raise ValueError("the request ended early") from None
    conn.settimeout(None)
    return json.loads(payload), fds


def _become_program(request: dict[str, Any], output: int, loaded: _Loaded) -> str:
    """In the forked child: set up the process ``python main.py`` would be, then exec it or return the absolute
    path of the program to run."""
    parent = os.getppid()
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()
    if os.getppid() != parent:
        os._exit(128 + signal.SIGKILL)
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(stdin)
    os.close(output)
    command, env = list(request["command"]), dict(request["env"])
    try:
        if request.get("mount_setup"):
            _private_mounts(request["mount_setup"])
        os.chdir(request["cwd"])
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"qsflow: the program could not be started: {exc}", file=sys.stderr, flush=True)
        os._exit(126)
    os.environ.clear()
    os.environ.update(env)
    if (len(command) != 2 or command[0] != sys.executable or import_time_variables(env) not in loaded.variables
            or _shadows(Path(command[1]).resolve().parent, loaded.names)):
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"qsflow: the program could not be started: {exc}", file=sys.stderr, flush=True)
            os._exit(127)
    sys.argv, sys.orig_argv = [command[1]], list(command)
    os.environ.update(loaded.import_effects)
    entry = os.path.abspath(command[1])  # the program's __file__, as Python >= 3.9 gives it
    job_path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.path.dirname(os.path.realpath(entry)), *job_path, *loaded.base_path]
    if "numpy" in sys.modules:  # the zygote's seed would be every program's (Python's random reseeds itself)
        sys.modules["numpy"].random.seed()
    return entry


def _private_mounts(setup: list[str]) -> None:
    """A private mount namespace for this process (``unshare --mount --propagation private``), then ``setup``."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.unshare(_CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"private mount namespace: {os.strerror(errno)}")
    subprocess.run([*setup, "true"], check=True)


def _shadows(folder: Path, preloaded: frozenset[str]) -> bool:
    """Whether the program's folder holds a module named like one the zygote imported (a fresh interpreter would
    import the program's)."""
    try:
        names = {entry.name.split(".", 1)[0] for entry in folder.iterdir()}
    except OSError:
        return True
    return not names.isdisjoint(preloaded)


def _run(entry: str) -> None:
    """Run the program at ``entry`` as ``python main.py`` runs it: as the ``__main__`` module, which it stays until
    the process ends; an uncaught exception is printed from the program's own frames on; then :func:`_end`."""
    import builtins
    import importlib.machinery
    import types

    module = types.ModuleType("__main__")
    module.__file__, module.__cached__, module.__annotations__ = entry, None, {}
    module.__loader__ = importlib.machinery.SourceFileLoader("__main__", entry)
    module.__builtins__ = builtins  # the module, as in a script's __main__ (elsewhere it may be its dict)
    sys.modules["__main__"] = module
    interrupted = False
    try:
        with io.open_code(entry) as source:
            code = compile(source.read(), entry, "exec")
        exec(code, module.__dict__)
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:
        traceback = exc.__traceback__
        while traceback is not None and traceback.tb_frame.f_code.co_filename != entry:
            traceback = traceback.tb_next
        exc.__traceback__ = traceback or exc.__traceback__  # Python's hook prints the exception's own
        sys.excepthook(type(exc), exc, exc.__traceback__)
        status, interrupted = 1, isinstance(exc, KeyboardInterrupt)
    _end(status, interrupted)


def _exit_status(exc: SystemExit) -> int:
    """The exit status Python gives ``sys.exit(code)``: None 0, an int itself, anything else printed and 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _end(status: int, interrupted: bool) -> None:
    """End the program's process as Python ends one, but for tearing down the preloaded modules: that walked
    every object the zygote imported (~80 ms a program here, its pages copied from the zygote's one by one).
    Non-daemon threads are joined and ``atexit`` handlers run (Ray's shutdown, Prefect's log and event flush,
    ``weakref.finalize``), files the program left open are flushed, then C's ``exit`` runs the libraries'
    own exit handlers (HDF5 closes its files) with the interpreter held still, as in Python's own end."""
    import atexit

    threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter's end does first
    atexit._run_exitfuncs()
    for obj in gc.get_objects():  # the program's objects only: the zygote's are frozen out of sight
        if isinstance(obj, io.IOBase):
            with contextlib.suppress(Exception):
                if not obj.closed and obj.writable():
                    obj.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if interrupted:  # as Python >= 3.8 ends on an uncaught KeyboardInterrupt: killed by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    ctypes.PyDLL(None).exit(status)  # PyDLL: keeps the GIL, as the interpreter's end does


def main(argv: list[str]) -> None:
    path, worker = argv[0], int(argv[1])
    if os.getppid() != worker:
        return
    base_path = sys.path[1:]  # without the -m folder; the job's PYTHONPATH goes before these
    own_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    import importlib

    before = dict(os.environ)
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if threading.active_count() != 1:
        print(f"qsflow program zygote: not started, importing {PRELOAD} started threads", file=sys.stderr)
        return
    # Out of the collector's sight: a forked program's end (its interpreter's collections) took ~0.5 s more with
    # them, and its pages stay shared with the zygote's.
    gc.freeze()
    loaded = _Loaded(
        base_path=[p for p in base_path if p not in own_path],
        # a job's environment has what the imports set too when its runner imported the same (it imports Ray)
        variables=[import_time_variables(before), import_time_variables(os.environ)],
        import_effects={k: v for k, v in os.environ.items() if before.get(k) != v},  # Ray: RAY_CLIENT_MODE
        names=frozenset(name.split(".", 1)[0] for name in sys.modules),
    )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)
    listener.bind(path)
    os.umask(old_umask)
    listener_inode = os.stat(path).st_ino  # a later worker's zygote may listen at the same path
    listener.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    zygote = os.getpid()
    try:
        entry = _serve(listener, worker, loaded)
    finally:
        if os.getpid() == zygote:  # stopped, or its worker gone (a forked program returns here too)
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == listener_inode:
                    os.unlink(path)
    _run(entry)


if __name__ == "__main__":
    main(sys.argv[1:])
