"""Unpacking an uploaded program's archive never writes outside the job's program directory (tar slip).

Runs ``flows.runner._unpack`` on crafted archives, with Python's "data" extraction filter and, as on Pythons that
lack it (Debian 12's 3.11.2), with qsflow's own checks. No server needed.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from flows.runner import _unpack


def _archive(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


def _device(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info, b""


EVIL = {
    "dot-dot": [_file("main.py"), _file("../escaped.txt")],
    "absolute": [_file("main.py"), _file("/tmp/qsflow-absolute-escape.txt")],
    "symlink out": [_link("data", "../../outside", tarfile.SYMTYPE), _file("main.py")],
    "hard link out": [_link("passwd", "../outside/passwd", tarfile.LNKTYPE)],
    "device": [_device("null")],
}


@pytest.fixture(params=["data filter", "own checks"])
def extraction(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "own checks":
        monkeypatch.delattr(tarfile, "data_filter")
    return request.param


@pytest.mark.parametrize("case", sorted(EVIL))
def test_crafted_archives_are_refused_and_nothing_lands_outside(case: str, extraction: str, tmp_path: Path) -> None:
    target = tmp_path / "jobs" / "program"
    target.mkdir(parents=True)
    try:
        _unpack(_archive(*EVIL[case]), target)
    except tarfile.TarError:
        refused = True
    else:
        refused = False
    # Python's filter keeps an absolute name inside the directory (its leading '/' stripped); all else is refused
    assert refused or (case == "absolute" and extraction == "data filter"
                       and (target / "tmp" / "qsflow-absolute-escape.txt").is_file())
    outside = [p for p in tmp_path.rglob("*") if not p.is_relative_to(target) and p.is_file()]
    assert outside == [] and not Path("/tmp/qsflow-absolute-escape.txt").exists()


def test_a_plain_program_unpacks(extraction: str, tmp_path: Path) -> None:
    folder = tarfile.TarInfo("lib")
    folder.type = tarfile.DIRTYPE
    inside_link = _link("lib/alias.py", "helpers.py", tarfile.SYMTYPE)
    _unpack(_archive(_file("main.py", b"print(1)"), (folder, b""), _file("lib/helpers.py", b"X = 1"), inside_link),
            tmp_path)
    assert (tmp_path / "main.py").read_bytes() == b"print(1)"
    assert (tmp_path / "lib" / "alias.py").read_bytes() == b"X = 1"


def test_a_job_refuses_a_crafted_archive_in_the_store_and_writes_nothing_outside(client, qsflow_home):
    """End to end: a crafted archive swapped into the store as a function's program fails the job (ERROR, the
    reason in its logs) and nothing lands outside the job's program directory."""
    import json
    import uuid

    from serverless_compat import QiskitFunction

    from conftest import PROGRAMS

    function = client.upload(QiskitFunction(title="tar-slip", entrypoint="echo.py", working_dir=str(PROGRAMS / "basic")))
    marker = f"qsflow-slip-{uuid.uuid4().hex}.txt"
    # From <home>/jobs/<id>/work, three levels up is the qsflow home itself.
    store = client._store
    folder = f"programs/tar-slip/{function.version}"
    meta = json.loads(store.read_bytes(f"{folder}/meta.json"))
    store.write_bytes(f"{folder}/program.tar.gz", _archive(_file("echo.py", b"print('never runs')"),
                                                           _file(f"../../../{marker}", b"escaped")))
    job = function.run()
    with pytest.raises(Exception):
        job.result(cadence=1)
    assert job.status() == "ERROR"
    assert meta["entrypoint"] == "echo.py"
    assert "never runs" not in job.logs()
    assert not list(qsflow_home.rglob(marker)) and not list(Path("/tmp").glob(marker))
