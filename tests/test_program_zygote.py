"""The program zygote (deployments/program_zygote.py): a forked program is the process ``python main.py`` is.

Each check runs the same program both ways, forked by a real zygote and as a plain ``python main.py`` subprocess,
and compares what the program saw and printed, its exit status and its files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deployments import program_zygote
from flows.data_mounts import DATA_MOUNT, JobData, mount_namespaces_available

PROBE = textwrap.dedent('''
    import atexit, json, os, sys, threading, time
    preloaded = "qiskit" in sys.modules  # before the program imports anything itself
    module_names = sorted(name for name in globals() if name.startswith("__"))
    open_fds = sorted(os.listdir("/proc/self/fd"))  # 0-2, and the one listing them
    seen = {"argv": sys.argv, "orig_argv": sys.orig_argv, "file": __file__, "name": __name__, "path0": sys.path[0],
            "cwd": os.getcwd(),
            "variable": os.environ.get("PROBE_VARIABLE"), "group_leader": os.getpgid(0) == os.getpid(),
            "stdin": sys.stdin.read(), "module_names": module_names, "builtins": type(__builtins__).__name__, "open_fds": open_fds, "job_path": os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] in sys.path}
    import numpy
    seen["random"] = int(numpy.random.randint(1 << 30))
    print("SEEN " + json.dumps(seen) + " PRELOADED " + str(preloaded), flush=True)
    left_open = open("left-open.txt", "w")
    left_open.write("written, never closed")
    atexit.register(lambda: print("atexit handler ran"))
    threading.Thread(target=lambda: (time.sleep(0.2), print("thread finished"))).start()
    mode = os.environ.get("PROBE_MODE")
    if mode == "exit":
        sys.exit(3)
    if mode == "message":
        sys.exit("stopped with a message")
    if mode == "raise":
        raise ValueError("the program failed")
''')


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("zygote") / "z.sock")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = program_zygote.launch(path, env)
    _wait_for(lambda: os.path.exists(path), what="the zygote's socket")
    yield path, env
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:  # seen once in CI (session 14), not reproduced: keep what it was doing
        stack = _stack_of(process.pid)
        process.kill()
        process.wait()
        pytest.fail(f"The zygote did not exit within 30 s of SIGTERM. Its stack then (py-spy):\n{stack}")
    assert not os.path.exists(path), "the zygote removes its socket when stopped"


def _stack_of(pid: int) -> str:
    """Every thread's stack of process ``pid``, Python and native, from py-spy (which comes with ray[default])."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return f"(no py-spy at {spy})"
    try:
        dumped = subprocess.run([str(spy), "dump", "--native", "--pid", str(pid)], capture_output=True, text=True,
                                timeout=60)
    except subprocess.TimeoutExpired:
        return "(py-spy did not answer within 60 s)"
    return dumped.stdout + dumped.stderr


def _wait_for(condition, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _program(tmp_path: Path, source: str = PROBE, name: str = "program") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "main.py").write_text(source)
    return folder


def _run(folder: Path, env: dict, forked_by: str | None, mount_setup=None) -> tuple[int, str]:
    """Run ``python main.py`` in ``folder``: forked by the zygote at ``forked_by``, else as a subprocess."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(folder.parent), env.get("PYTHONPATH", "")])}
    command = [sys.executable, "main.py"]
    if forked_by is None:
        process = program_zygote.start(command, folder, env, mount_setup)
        assert isinstance(process, subprocess.Popen)
    else:
        process = program_zygote.ForkedProgram(forked_by, command, folder, env, mount_setup)
    output = process.stdout.read()
    return process.wait(), output


@pytest.mark.parametrize("mode, status", [("", 0), ("exit", 3), ("message", 1), ("raise", 1)])
def test_a_forked_program_is_the_process_python_main_py_is(zygote, tmp_path, mode, status):
    path, env = zygote
    env = {**env, "PROBE_VARIABLE": "job value", "PROBE_MODE": mode}
    fresh_folder, forked_folder = _program(tmp_path, name="fresh"), _program(tmp_path, name="forked")
    fresh_status, fresh = _run(fresh_folder, env, forked_by=None)
    forked_status, forked = _run(forked_folder, env, forked_by=path)

    assert "PRELOADED False" in fresh and "PRELOADED True" in forked  # forked from the zygote indeed
    assert (forked_status, fresh_status) == (status, status)
    same_folder = forked.replace(str(forked_folder), str(fresh_folder))
    assert same_folder.split(" PRELOADED ")[1][len("True"):] == fresh.split(" PRELOADED ")[1][len("False"):]
    assert {**_seen(same_folder), "random": None} == {**_seen(fresh), "random": None}
    seen = _seen(forked)
    assert seen["argv"] == ["main.py"] and seen["name"] == "__main__" and seen["stdin"] == ""
    assert seen["file"] == str(forked_folder / "main.py") and seen["path0"] == str(forked_folder)
    assert seen["cwd"] == str(forked_folder) and seen["variable"] == "job value"
    assert seen["group_leader"] and seen["job_path"]
    assert forked.rstrip().endswith("thread finished\natexit handler ran")
    if mode == "raise":
        assert f'Traceback (most recent call last):\n  File "{forked_folder / "main.py"}"' in forked
        assert "program_zygote" not in forked
    for folder in (fresh_folder, forked_folder):
        assert (folder / "left-open.txt").read_text() == "written, never closed"


def _seen(output: str) -> dict:
    import json

    line = next(line for line in output.splitlines() if line.startswith("SEEN "))
    return json.loads(line.removeprefix("SEEN ").split(" PRELOADED ")[0])


ENDING_IMPORTS = textwrap.dedent('''
    import atexit, sys
    import ray  # registers ray.shutdown to run at the end, as in any program that uses Ray
    ending = []
    def note_import(event, args):
        if event == "import" and ending:
            print("IMPORTED AT THE END " + args[0], flush=True)
    sys.addaudithook(note_import)
    atexit.register(ending.append, True)  # registered after Ray's, so it runs before Ray's shutdown
    print("program done", flush=True)
''')


def test_a_forked_program_imports_nothing_as_it_ends(zygote, tmp_path):
    """The zygote preloads what the exit handlers of its preloaded libraries import (Ray's shutdown imports its
    compiled-DAG module): otherwise every job's program would import it again as it ends (~18 ms of CPU here)."""
    path, env = zygote
    status, output = _run(_program(tmp_path, ENDING_IMPORTS), env, forked_by=path)
    assert status == 0 and "program done" in output
    assert "IMPORTED AT THE END" not in output, output


def test_forked_programs_do_not_share_the_zygotes_random_state(zygote, tmp_path):
    path, env = zygote
    draws = {_seen(_run(_program(tmp_path, name=f"p{i}"), env, forked_by=path)[1])["random"] for i in range(3)}
    assert len(draws) == 3


def test_a_variable_read_at_import_or_a_shadowing_module_gets_a_fresh_interpreter(zygote, tmp_path):
    path, env = zygote
    status, output = _run(_program(tmp_path, name="ray_variable"), {**env, "RAY_DEDUP_LOGS": "7"}, forked_by=path)
    assert status == 0 and "PRELOADED False" in output

    folder = _program(tmp_path, PROBE + "\nimport qiskit\nprint(qiskit.OWN)\n", name="shadowing")
    (folder / "qiskit.py").write_text("OWN = 'the program folder qiskit.py'\n")
    status, output = _run(folder, env, forked_by=path)
    assert status == 0 and "PRELOADED False" in output and "the program folder qiskit.py" in output


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "Z"


def test_the_program_dies_with_its_runner(zygote, tmp_path):
    path, env = zygote
    folder = _program(tmp_path, "import time\ntime.sleep(600)\n")
    runner = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''
        import sys, time
        sys.path.insert(0, {str(Path(program_zygote.__file__).parent.parent)!r})
        from pathlib import Path
        from deployments.program_zygote import ForkedProgram
        program = ForkedProgram({path!r}, [sys.executable, "main.py"], Path({str(folder)!r}), {env!r}, None)
        print(program.pid, flush=True)
        time.sleep(600)
    ''')], stdout=subprocess.PIPE, text=True)
    pid = int(runner.stdout.readline())
    assert not _gone(pid)
    runner.kill()
    runner.wait()
    _wait_for(lambda: _gone(pid), what="the program to be killed")


def test_the_program_dies_with_the_zygote_and_the_runner_gets_its_status(tmp_path):
    path = str(tmp_path / "own.sock")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    zygote = program_zygote.launch(path, env)
    try:
        _wait_for(lambda: os.path.exists(path), what="the zygote's socket")
        program = program_zygote.ForkedProgram(path, [sys.executable, "main.py"],
                                               _program(tmp_path, "import time\ntime.sleep(600)\n"), env, None)
        assert program.poll() is None
        zygote.kill()
        assert program.wait() == -signal.SIGKILL
        _wait_for(lambda: _gone(program.pid), what="the program to be killed")
    finally:
        zygote.kill()
        zygote.wait()


def test_without_a_zygote_the_program_is_a_subprocess(tmp_path, monkeypatch):
    monkeypatch.setenv(program_zygote.SOCKET_ENV, str(tmp_path / "nobody-listens.sock"))
    process = program_zygote.start([sys.executable, "-c", "print('plain')"], tmp_path, dict(os.environ), None)
    assert isinstance(process, subprocess.Popen) and process.stdout.read() == "plain\n" and process.wait() == 0


@pytest.mark.skipif(not mount_namespaces_available(), reason="needs root and util-linux unshare")
def test_a_forked_program_sees_its_data_mount_alone(zygote, tmp_path):
    path, env = zygote
    data = tmp_path / "data"
    data.mkdir()
    (data / "input.txt").write_text("the job's data file")
    setup = JobData(data_dir=data, function_data_dir=None, mounted=True).mount_setup()
    source = PROBE + f"\nprint('DATA', open({DATA_MOUNT!r} + '/input.txt').read())\n"
    for forked_by in (path, None):
        status, output = _run(_program(tmp_path, source, name=f"mounted-{bool(forked_by)}"), env, forked_by, setup)
        assert status == 0 and "DATA the job's data file" in output
        assert ("PRELOADED True" in output) == bool(forked_by)
    assert not Path(DATA_MOUNT, "input.txt").exists()  # the mount stayed in the program's namespace


def test_a_zygote_whose_worker_is_gone_takes_no_more_programs_and_ends_with_its_last(tmp_path):
    """Its worker killed alone: the running program goes on to its end (the job outlives its worker, as
    tests/test_worker_cli.py checks for whole jobs), no new program is forked, and the zygote then leaves."""
    path = str(tmp_path / "drain.sock")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    worker = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''
        import sys, time
        sys.path.insert(0, {str(Path(program_zygote.__file__).parent.parent)!r})
        from deployments.program_zygote import launch
        print(launch({path!r}, {env!r}).pid, flush=True)
        time.sleep(600)
    ''')], stdout=subprocess.PIPE, text=True)
    zygote = int(worker.stdout.readline())
    try:
        _wait_for(lambda: os.path.exists(path), what="the zygote's socket")
        folder = _program(tmp_path, "import time\ntime.sleep(1.5)\nprint('finished after its worker')\n")
        program = program_zygote.ForkedProgram(path, [sys.executable, "main.py"], folder, env, None)
        worker.kill()
        worker.wait()
        assert program.stdout.read() == "finished after its worker\n" and program.wait() == 0
        with pytest.raises(program_zygote.ZygoteUnavailable):
            program_zygote.ForkedProgram(path, [sys.executable, "main.py"], folder, env, None)
        _wait_for(lambda: _gone(zygote), what="the zygote to leave after its last program")
        assert not os.path.exists(path)
    finally:
        worker.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(zygote, signal.SIGKILL)


def test_a_bad_request_is_refused_and_the_zygote_goes_on(zygote, tmp_path):
    import socket

    path, env = zygote
    for garbage in (b"", b"\x00\x00\x00\x05hello", b"no"):  # a probe; no pipe passed; cut short
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(path)
            conn.sendall(garbage)
            conn.shutdown(socket.SHUT_WR)
            try:
                answer = conn.recv(4)
            except ConnectionResetError:  # closed with what it sent unread
                answer = b""
            assert answer == b""  # closed, no program started
    status, output = _run(_program(tmp_path), env, forked_by=path)
    assert status == 0 and "PRELOADED True" in output


def test_a_zygote_that_does_not_answer_in_time_leaves_the_program_to_a_subprocess(tmp_path, monkeypatch):
    import socket

    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:  # accepts (backlog), never answers
        silent.bind(path)
        silent.listen(1)
        monkeypatch.setenv(program_zygote.SOCKET_ENV, path)
        monkeypatch.setattr(program_zygote, "START_TIMEOUT_S", 0.5)
        process = program_zygote.start([sys.executable, "-c", "print('plain')"], tmp_path, dict(os.environ), None)
        assert isinstance(process, subprocess.Popen) and process.stdout.read() == "plain\n" and process.wait() == 0


def test_an_h5_file_a_forked_program_leaves_open_is_complete(zygote, tmp_path):
    """The forked program's end skips Python's teardown of modules; HDF5 still closes what it left open."""
    import h5py

    path, env = zygote
    folder = _program(tmp_path, PROBE + textwrap.dedent('''
        import h5py, numpy
        store = h5py.File("results.h5", "w")
        store.create_dataset("counts", data=numpy.arange(1000))
        store.attrs["note"] = "never closed"
    '''))
    status, output = _run(folder, env, forked_by=path)
    assert status == 0 and "PRELOADED True" in output
    with h5py.File(folder / "results.h5", "r") as written:
        assert int(written["counts"][-1]) == 999 and written.attrs["note"] == "never closed"
