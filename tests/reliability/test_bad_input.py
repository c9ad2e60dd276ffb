"""Bad input, on the tests' embedded Prefect server: every refusal names the fix and leaves nothing behind.

After each refused upload the Prefect API has no new deployment, flow, block or variable and the
store no new file (``footprint``); after each refused run the function has no new flow run. Only
two jobs run (the size limits' accepted side); everything else is refused before anything is queued.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from serverless_compat import QiskitFunction, QiskitServerlessException, ServerlessClient

from conftest import PROGRAMS, make_tar
from footprint import footprint, runs_of, stored

BASIC = PROGRAMS / "basic"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
REFUSED = "refused-upload"


@pytest.fixture(scope="module", autouse=True)
def echo(client):
    """A function to run; uploading it first also saves the store's block (the client's first-use setup),
    so what the footprints compare is what a refused call alone could leave."""
    return client.upload(QiskitFunction(title="bad-input-echo", entrypoint="echo.py", working_dir=str(BASIC)))


def _program_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "program"
    folder.mkdir()
    (folder / "main.py").write_text("print('hi')\n")
    return folder


def _outside_file(tmp_path: Path, name: str = "secret.py") -> Path:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / name).write_text("print('not yours')\n")
    return outside / name


def _with_link(tmp_path: Path, name: str, target: str) -> dict:
    folder = _program_dir(tmp_path)
    (folder / name).symlink_to(target)
    return dict(working_dir=str(folder))


def _with_fifo(tmp_path: Path) -> dict:
    folder = _program_dir(tmp_path)
    os.mkfifo(folder / "pipe")
    return dict(working_dir=str(folder))


def _with_big_file(tmp_path: Path, megabytes: float, sparse: bool = True) -> dict:
    folder = _program_dir(tmp_path)
    with open(folder / "weights.bin", "wb") as handle:
        if sparse:  # its size counts, not its blocks: nothing is read before the refusal
            handle.truncate(int(megabytes * 2**20))
        else:
            handle.write(os.urandom(int(megabytes * 2**20)))
    return dict(working_dir=str(folder))


def _entrypoint_dir(tmp_path: Path) -> dict:
    folder = _program_dir(tmp_path)
    (folder / "package.py").mkdir()
    return dict(working_dir=str(folder), entrypoint="package.py")


# (id, kwargs for QiskitFunction given tmp_path, environment, the fix the error must name)
UPLOADS = [
    # working_dir
    ("working_dir missing", lambda t: dict(working_dir="/nonexistent/qsflow-dir"), {}, "is not a directory"),
    ("working_dir is a file", lambda t: dict(working_dir=str(BASIC / "echo.py")), {}, "is not a directory"),
    ("working_dir not a path", lambda t: dict(working_dir=42), {}, "must be the path of the folder"),
    # entrypoint
    ("entrypoint missing", lambda t: dict(entrypoint="missing.py"), {}, r"Entrypoint file \[missing.py\] does not exist"),
    ("entrypoint none", lambda t: dict(entrypoint=None), {}, "must name a .py file"),
    ("entrypoint not .py", lambda t: dict(entrypoint="helper_module.txt"), {}, "must name a .py file"),
    ("entrypoint ../ outside", lambda t: dict(entrypoint="../failing/fails.py"), {}, "does not exist in"),
    ("entrypoint absolute outside", lambda t: dict(entrypoint=str(_outside_file(t))), {}, "relative to working_dir"),
    ("entrypoint absolute inside", lambda t: dict(entrypoint=str(BASIC / "echo.py")), {}, "relative to working_dir"),
    ("entrypoint a folder", _entrypoint_dir, {}, "does not exist in"),
    ("entrypoint links outside", lambda t: {**_with_link(t, "entry.py", str(_outside_file(t))), "entrypoint": "entry.py"},
     {}, "does not exist in"),
    # title and provider
    ("title empty", lambda t: dict(title=""), {}, "needs a non-empty title"),
    ("title blank", lambda t: dict(title="   "), {}, "needs a non-empty title"),
    ("title 101 chars", lambda t: dict(title="a" * 101), {}, "101 characters; use at most 100"),
    ("title newline", lambda t: dict(title="bad\ntitle"), {}, "no control characters"),
    ("title tab", lambda t: dict(title="bad\ttitle"), {}, "no control characters"),
    ("title NUL", lambda t: dict(title="bad\x00title"), {}, "no control characters"),
    ("title DEL", lambda t: dict(title="bad\x7ftitle"), {}, "no control characters"),
    ("title escape", lambda t: dict(title="bad\x1b[31mtitle"), {}, "no control characters"),
    ("title ..", lambda t: dict(title=".."), {}, "letters, digits"),
    ("provider ..", lambda t: dict(title="../escape"), {}, "letters, digits"),
    ("provider 101 chars", lambda t: dict(provider="p" * 101), {}, "use at most 100"),
    # size
    ("over 50 MB (default)", lambda t: _with_big_file(t, 50.5), {}, r"50\.5 MB, over the 50 MB allowed.*QSFLOW_MAX_UPLOAD_MB"),
    ("over QSFLOW_MAX_UPLOAD_MB", lambda t: _with_big_file(t, 1.5, sparse=False), {"QSFLOW_MAX_UPLOAD_MB": "1"},
     r"over the 1 MB allowed"),
    ("over MAX_ARTIFACT_FILE_SIZE_MB_OVERRIDE", lambda t: _with_big_file(t, 2.5), {"MAX_ARTIFACT_FILE_SIZE_MB_OVERRIDE": "2"},
     r"over the 2 MB allowed"),
    ("limit not a number", lambda t: {}, {"QSFLOW_MAX_UPLOAD_MB": "lots"}, r"QSFLOW_MAX_UPLOAD_MB='lots' is not a number"),
    # links and special files
    ("symlink to a file outside", lambda t: _with_link(t, "data.txt", str(_outside_file(t))), {}, "symlink leading outside"),
    ("symlink ../ outside", lambda t: _with_link(t, "up", ".."), {}, "symlink leading outside"),
    ("symlink to /", lambda t: _with_link(t, "root", "/"), {}, "symlink leading outside"),
    ("dangling symlink outside", lambda t: _with_link(t, "gone", "/nonexistent/qsflow"), {}, "symlink leading outside"),
    ("fifo", _with_fifo, {}, "not a plain file"),
    # dependencies and env_vars
    ("dependency empty version", lambda t: dict(dependencies=["numpy=="]), {}, "is not a valid requirement"),
    ("dependency prose", lambda t: dict(dependencies=["not a requirement!"]), {}, "is not a valid requirement"),
    ("dependency empty", lambda t: dict(dependencies=[""]), {}, "is not a valid requirement"),
    ("dependency pip option", lambda t: dict(dependencies=["--index-url=http://evil.example/simple"]), {},
     "is not a valid requirement"),
    ("dependency editable", lambda t: dict(dependencies=["-e ."]), {}, "is not a valid requirement"),
    ("dependency smuggled line", lambda t: dict(dependencies=["numpy\n--extra-index-url http://evil.example"]), {},
     "is not a valid requirement"),
    ("dependency not a string", lambda t: dict(dependencies=[42]), {}, "is not a valid requirement"),
    ("dependencies a string", lambda t: dict(dependencies="numpy"), {}, "must be a list of requirement strings"),
    ("dependencies a dict", lambda t: dict(dependencies={"numpy": "2.1"}), {}, "must be a list of requirement strings"),
    ("env_vars a list", lambda t: dict(env_vars=["X=1"]), {}, "must be a dict"),
    ("env_vars non-string value", lambda t: dict(env_vars={"X": 1}), {}, "must map strings to strings"),
]


@pytest.mark.parametrize("case, make, env, fix", UPLOADS, ids=[u[0] for u in UPLOADS])
def test_bad_upload_is_refused_naming_the_fix_and_nothing_is_written(
        client, prefect, qsflow_home, tmp_path, monkeypatch, case, make, env, fix):
    kwargs = make(tmp_path)
    folder = kwargs.get("working_dir")
    own_folder = isinstance(folder, str) and (Path(folder) / "main.py").is_file()
    spec = dict(title=REFUSED, entrypoint="main.py" if own_folder else "echo.py", working_dir=str(BASIC))
    spec.update(kwargs)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = footprint(prefect, qsflow_home)
    with pytest.raises(QiskitServerlessException, match=fix) as refused:
        client.upload(QiskitFunction(**spec))
    assert "Code: 400" in str(refused.value)
    assert footprint(prefect, qsflow_home) == before
    with pytest.raises(QiskitServerlessException, match="doesn't exist"):
        client.function(spec["title"], provider=spec.get("provider"))


@pytest.mark.parametrize("title, provider, message", [
    ("a/b/c", None, "can only contain one slash"),
    ("acme/fn", "other", "two different providers"),
])
def test_titles_with_slashes_are_refused_when_the_function_is_described(title, provider, message):
    with pytest.raises(ValueError, match=message):
        QiskitFunction(title=title, provider=provider, entrypoint="echo.py", working_dir=str(BASIC))


def test_a_slash_put_in_the_title_afterwards_is_refused_at_upload(client, prefect, qsflow_home):
    function = QiskitFunction(title="fine", entrypoint="echo.py", working_dir=str(BASIC))
    function.title = "x/y"
    before = footprint(prefect, qsflow_home)
    with pytest.raises(QiskitServerlessException, match="no '/'.*QiskitFunction\\(provider=...\\)"):
        client.upload(function)
    assert footprint(prefect, qsflow_home) == before


def test_size_limits_accept_what_is_under_them(client, monkeypatch, tmp_path):
    """The accepted side of the working_dir limit: 0.9 MB of incompressible data under a 1 MB limit."""
    monkeypatch.setenv("QSFLOW_MAX_UPLOAD_MB", "1")
    kwargs = _with_big_file(tmp_path, 0.9, sparse=False)
    uploaded = client.upload(QiskitFunction(title="just-under-limit", entrypoint="main.py", **kwargs))
    assert uploaded.version == "1"


# -- run -------------------------------------------------------------------------------------------------

def _circular() -> list:
    loop: list = []
    loop.append(loop)
    return loop


BAD_ARGUMENTS = [
    ("object", lambda: {"value": object()}, "Cannot encode"),
    ("bytes", lambda: {"value": b"raw"}, "Object of type bytes is not JSON serializable"),
    ("generator", lambda: {"value": (i for i in range(3))}, "Object of type generator"),
    ("circular list", lambda: {"value": _circular()}, "Circular reference detected"),
    ("open file", lambda: {"value": open(os.devnull)}, "TextIOWrapper"),
    ("socket", lambda: {"value": socket.socket()}, "Object of type socket"),
    ("lambda", lambda: {"value": lambda: 1}, "cannot be sent to a job.*not a function"),
    ("function", lambda: {"value": print}, "cannot be sent to a job.*not a function"),
]


@pytest.mark.parametrize("case, make, message", BAD_ARGUMENTS, ids=[b[0] for b in BAD_ARGUMENTS])
def test_unserializable_arguments_are_refused_and_nothing_is_queued(client, prefect, echo, case, make, message):
    before = runs_of(prefect, "bad-input-echo")
    arguments = make()
    try:
        with pytest.raises(QiskitServerlessException, match=message) as refused:
            echo.run(**arguments)
        assert "Code: 400" in str(refused.value)
        with pytest.raises(QiskitServerlessException, match=message):
            client.run("bad-input-echo", arguments=arguments)
        with pytest.raises(QiskitServerlessException, match=message):
            echo.validate_arguments(arguments)
    finally:
        for value in arguments.values():
            if hasattr(value, "close"):
                value.close()
    assert runs_of(prefect, "bad-input-echo") == before


def test_arguments_that_are_not_a_dict_are_refused(client, prefect, echo):
    before = runs_of(prefect, "bad-input-echo")
    for arguments in ([1, 2], "x=1", 3):
        with pytest.raises(QiskitServerlessException, match="must be a dict of name -> value"):
            client.run(echo, arguments=arguments)
    assert runs_of(prefect, "bad-input-echo") == before


def test_arguments_over_the_size_limit_are_refused_and_nothing_is_queued(client, prefect, echo, monkeypatch):
    before = runs_of(prefect, "bad-input-echo")
    with pytest.raises(QiskitServerlessException,
                       match=r"0\.50 MB encoded, over the 0\.5 MB.*QSFLOW_MAX_ARGUMENTS_MB.*PREFECT_SERVER_API_MAX_PARAMETER_SIZE"):
        echo.run(blob="x" * (2**19 + 100))  # just over Prefect's own limit on a flow run's parameters
    with pytest.raises(QiskitServerlessException, match=r"over the 0\.5 MB"):
        echo.run(blob="x" * (50 * 10**6))
    monkeypatch.setenv("QSFLOW_MAX_ARGUMENTS_MB", "0.01")
    with pytest.raises(QiskitServerlessException, match=r"over the 0\.01 MB"):
        echo.run(values=list(range(5000)))
    assert runs_of(prefect, "bad-input-echo") == before


def test_arguments_just_under_the_default_limit_reach_the_program(echo):
    """The accepted side of the arguments limit: 0.49 MB of arguments round-trip through a real job."""
    blob = "q" * (2**19 - 200)
    result = echo.run(blob=blob).result(cadence=1)
    assert result["arguments"]["blob"] == blob


@pytest.mark.parametrize("function, provider", [("no-such-function", None), ("acme/no-such-function", None),
                                                ("no-such-function", "acme"), ("", None)])
def test_unknown_function_is_a_404_and_nothing_is_queued(client, prefect, function, provider):
    full = f"{provider}/{function}" if provider else function
    with pytest.raises(QiskitServerlessException, match=f"Qiskit Function {full} doesn't exist") as refused:
        client.run(function, {}, provider=provider)
    assert "Code: 404" in str(refused.value)
    with pytest.raises(QiskitServerlessException, match="404"):
        client.function(function, provider=provider)
    assert runs_of(prefect, full or "none") == 0


# -- data files --------------------------------------------------------------------------------------------

BAD_NAMES = ["../x.tar", "/abs.tar", "a/b.tar", "a\\b.tar", "", "nul\x00.tar", "bell\x07.tar", "..", ".",
             ".hidden.tar", "x" * 252 + ".tar"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_file_names_are_refused(client, echo, name, tmp_path, qsflow_home):
    before = stored(qsflow_home)
    with pytest.raises(QiskitServerlessException, match="Invalid file name|Can not open file"):
        client.file_download(name, echo, download_location=str(tmp_path))
    with pytest.raises(QiskitServerlessException, match="Invalid file name|Can not open file"):
        client.file_download("missing.tar", echo, target_name=name or ".", download_location=str(tmp_path))
    with pytest.raises(QiskitServerlessException, match="Invalid file name|Can not open file"):
        client.file_delete(name, echo)
    assert stored(qsflow_home) == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, fix", [("tab\there.tar", "control characters"), (".hidden.tar", "may not start with '.'"),
                                       ("back\\slash.tar", "the data store is flat")])
def test_upload_under_a_bad_name_is_refused(client, echo, tmp_path, qsflow_home, name, fix):
    bad = make_tar(tmp_path / name)
    before = stored(qsflow_home)
    with pytest.raises(QiskitServerlessException, match=fix):
        client.file_upload(str(bad), echo)
    assert stored(qsflow_home) == before


def _zip_bytes() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "a")
    return buffer.getvalue()


# (file name, content, what the error says the content is)
MISMATCHES = [
    ("image.png", PNG, "Allowed types"),
    ("program.exe", b"MZ\x90\x00", "Allowed types"),
    ("no-suffix", b"plain", "Allowed types"),
    ("image.tar", PNG, r"named as tar but its content is not \(.*png"),
    ("image.h5", PNG, "named as h5"),
    ("image.json", PNG, "named as json"),
    ("empty.tar", b"", "named as tar"),
    ("zip.tar", _zip_bytes(), "named as tar"),
    ("text.h5", b"just text\n", "named as h5"),
    ("text.zip", b"just text\n", "named as zip"),
    ("broken.json", b'{"a": 1', "named as json"),
    ("binary.txt", b"a\x00b", "named as txt"),
    ("binary.csv", b"\xff\xfe\x00\x00", "named as csv"),
    ("magic-only.gz", b"\x1f\x8b" + b"not deflate data" * 4, "named as gzip"),
    ("magic-only.tar.gz", b"\x1f\x8b" + b"not deflate data" * 4, "named as tar"),
]


@pytest.mark.parametrize("name, content, says", MISMATCHES, ids=[m[0] for m in MISMATCHES])
def test_content_that_does_not_match_the_name_is_refused_and_nothing_written(
        client, echo, tmp_path, qsflow_home, name, content, says):
    path = tmp_path / name
    path.write_bytes(content)
    before = stored(qsflow_home)
    with pytest.raises(QiskitServerlessException, match=f"Upload failed: .*Uploaded file is not a valid type.*{says}"):
        client.file_upload(str(path), echo)
    assert name not in client.files(echo)
    assert stored(qsflow_home) == before  # no partial upload either


def test_upload_of_what_is_not_a_file_is_refused(client, echo, tmp_path, qsflow_home):
    before = stored(qsflow_home)
    for path in (tmp_path / "missing.tar", tmp_path):
        with pytest.raises(QiskitServerlessException, match="Can not open file .*give the path of an existing file"):
            client.file_upload(str(path), echo)
    assert stored(qsflow_home) == before


# -- an unreachable Prefect API ------------------------------------------------------------------------

@pytest.fixture
def dead_url() -> str:
    from deployments.processes import free_port

    return f"http://127.0.0.1:{free_port()}/api"


@pytest.fixture
def connections(monkeypatch):
    """Connection attempts this process makes, by (host, port): counted, then made as usual."""
    attempts: list[tuple[str, int]] = []
    real = socket.create_connection

    def counting(address, *args, **kwargs):
        attempts.append((address[0], int(address[1])))
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    return attempts


def _port(url: str) -> int:
    from urllib.parse import urlparse

    return urlparse(url).port


def test_unreachable_host_is_one_clear_error(dead_url, connections, monkeypatch):
    for make in (lambda: ServerlessClient(host=dead_url), lambda: ServerlessClient()):
        monkeypatch.setenv("QSFLOW_HOST", dead_url)  # the second client finds the URL in the environment
        connections.clear()
        with pytest.raises(QiskitServerlessException) as refused:
            make()
        message = str(refused.value)
        assert f"No Prefect API answers at {dead_url}" in message
        assert "`qsflow server start`" in message
        assert "Traceback" not in message
        assert [port for _, port in connections].count(_port(dead_url)) == 1  # one attempt, no retry loop


def test_a_server_gone_after_the_client_was_made_is_one_clear_error_per_call(client, dead_url, connections):
    gone = ServerlessClient(host=client.host)
    gone.host = dead_url  # the server at the client's URL went away
    calls = {"functions": gone.functions, "run": lambda: gone.run("bad-input-echo", {}),
             "job": lambda: gone.job("00000000-0000-0000-0000-000000000000")}
    for name, call in calls.items():
        connections.clear()
        with pytest.raises(QiskitServerlessException) as refused:
            call()
        message = str(refused.value)
        assert f"No Prefect API answers at {dead_url}" in message, (name, message)
        assert "`qsflow server start`" in message and "Code: 503" in message, (name, message)
        # Prefect's client retries a refused connection 3 times in its transport (about 1.5 s), then stops.
        assert 1 <= [port for _, port in connections].count(_port(dead_url)) <= 4, (name, connections)
