"""The QsflowStore block: Prefect's standard block checks, and data files on a real S3 server.

S3 tests run moto's S3-compatible HTTP server on 127.0.0.1 and talk to it through s3fs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer
from prefect.filesystems import RemoteFileSystem
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect.types import SecretDict

from blocks.storage import QsflowStore
from deployments import data_files
from deployments.access import Principal
from flows.data_mounts import job_data

from conftest import SAMPLE_KINDS, make_sample, make_tar


class TestQsflowStoreIsAStandardBlock(BlockStandardTestSuite):
    @pytest.fixture
    def block(self):
        return QsflowStore


@pytest.fixture(scope="module")
def s3_store():
    import s3fs

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        settings = {"client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        secrets = {"key": "testing", "secret": "testing"}
        s3fs.S3FileSystem(**settings, **secrets).call_s3("create_bucket", Bucket="qsflow-test")
        yield QsflowStore(
            filesystem=RemoteFileSystem(basepath="s3://qsflow-test/qsflow", settings=settings),
            secret_settings=SecretDict(secrets),
        )
    finally:
        server.stop()


def test_credentials_are_secret_in_the_block(s3_store):
    dumped = s3_store.model_dump(mode="json")
    assert "testing" not in str(dumped["secret_settings"])
    assert "testing" not in str(dumped["filesystem"])


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_s3_round_trip(s3_store, tmp_path, kind):
    source = make_sample(kind, tmp_path)
    scope = data_files.user_scope(Principal("s3user"), None)
    data_files.upload(s3_store, scope, source)
    assert source.name in data_files.list_files(s3_store, scope)
    target = data_files.download(s3_store, scope, source.name, target_name="back", download_location=str(tmp_path / "d"))
    assert Path(target).read_bytes() == source.read_bytes()
    data_files.delete(s3_store, scope, source.name)
    assert source.name not in data_files.list_files(s3_store, scope)


def test_s3_refused_upload_writes_nothing(s3_store, tmp_path):
    scope = data_files.user_scope(Principal("s3refused"), None)
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(ValueError, match="not a valid type"):
        data_files.upload(s3_store, scope, bad)
    fs, root = s3_store._fs()
    assert not fs.exists(f"{root}/{scope.folder}")


def test_s3_staging_round_trip(s3_store, tmp_path):
    """A job on an S3 store sees the scope's files locally; what it writes is uploaded after."""
    principal = Principal("stager")
    scope = data_files.user_scope(principal, None)
    data_files.upload(s3_store, scope, make_tar(tmp_path / "input.tar", b"input"))
    job_dir = tmp_path / "job"
    lines: list[str] = []
    with job_data(s3_store, "stager", "plain-function", job_dir, lines.append) as data:
        assert (data.data_dir / "input.tar").read_bytes() == (tmp_path / "input.tar").read_bytes()
        (data.data_dir / "output.txt").write_text("made by the job")
    assert data_files.list_files(s3_store, scope) == ["input.tar", "output.txt"]
    back = data_files.download(s3_store, scope, "output.txt", download_location=str(tmp_path))
    assert Path(back).read_text() == "made by the job"


def test_s3_staging_uploads_even_when_the_program_fails(s3_store, tmp_path):
    scope = data_files.user_scope(Principal("failer"), None)
    with pytest.raises(RuntimeError, match="program failed"):
        with job_data(s3_store, "failer", "fn", tmp_path / "job", lambda line: None) as data:
            (data.data_dir / "partial.txt").write_text("kept")
            raise RuntimeError("program failed")
    assert data_files.list_files(s3_store, scope) == ["partial.txt"]
