"""The flat /data store: client file calls, scopes, content checks, /data inside programs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem

from blocks.storage import QsflowStore
from deployments import data_files
from deployments.access import Forbidden, Principal
from flows.data_mounts import mount_namespaces_available
from serverless_compat import QiskitFunction, QiskitServerlessException

from conftest import PROGRAMS, SAMPLE_KINDS, make_h5, make_sample, make_tar



@pytest.fixture(scope="module")
def data_fn(client):
    return client.upload(QiskitFunction(title="data-writer", entrypoint="write_data.py",
                                        working_dir=str(PROGRAMS / "data")))


@pytest.fixture(scope="module")
def reader_fn(client):
    return client.upload(QiskitFunction(title="data-reader", entrypoint="read_data.py",
                                        working_dir=str(PROGRAMS / "data")))


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_round_trip(client, data_fn, tmp_path, kind):
    source = make_sample(kind, tmp_path)
    message = json.loads(client.file_upload(str(source), data_fn))
    assert message["message"].endswith(f"/{source.name}")
    assert source.name in client.files(data_fn)
    downloaded = client.file_download(source.name, data_fn, download_location=str(tmp_path / "down"))
    assert Path(downloaded).read_bytes() == source.read_bytes()
    named = client.file_download(source.name, data_fn, target_name="copy.bin",
                                 download_location=str(tmp_path / "down"))
    assert Path(named).name == "copy.bin"
    client.file_delete(source.name, data_fn)
    assert source.name not in client.files(data_fn)


def test_user_space_is_shared_by_the_users_functions(client, data_fn, reader_fn, tmp_path):
    make_tar(tmp_path / "shared.tar")
    client.file_upload(str(tmp_path / "shared.tar"), data_fn)
    assert "shared.tar" in client.files(reader_fn)
    assert "shared.tar" in client.files()  # the seed's files() with no function
    client.file_delete("shared.tar", reader_fn)
    assert "shared.tar" not in client.files(data_fn)


def test_strict_seed_mode_accepts_tar_and_h5_only(tmp_path):
    store = QsflowStore(filesystem=LocalFileSystem(basepath=str(tmp_path / "store")), allowed_types=["tar", "h5"])
    scope = data_files.user_scope(Principal("strict"), None)
    data_files.upload(store, scope, make_tar(tmp_path / "ok.tar"))
    data_files.upload(store, scope, make_h5(tmp_path / "ok.h5"))
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(ValueError, match="Allowed types: tar, h5"):
        data_files.upload(store, scope, tmp_path / "data.json")
    assert data_files.list_files(store, scope) == ["ok.h5", "ok.tar"]


def test_scopes_are_isolated(tmp_path):
    store = QsflowStore(filesystem=LocalFileSystem(basepath=str(tmp_path / "store")))
    alice, bob = Principal("alice", frozenset({"acme"})), Principal("bob", frozenset())
    data_files.upload(store, data_files.user_scope(alice, None), make_tar(tmp_path / "a.tar"))
    assert data_files.list_files(store, data_files.user_scope(bob, None)) == []
    # A provider function's user space is separate from the user's own space ...
    assert data_files.list_files(store, data_files.user_scope(alice, "acme/fn")) == []
    # ... and from the provider space, which only members reach.
    data_files.upload(store, data_files.provider_scope(alice, "acme/fn"), make_tar(tmp_path / "p.tar"))
    assert data_files.list_files(store, data_files.user_scope(alice, "acme/fn")) == []
    with pytest.raises(Forbidden, match="don't have access"):
        data_files.provider_scope(bob, "acme/fn")
    # The function's own jobs reach its provider space, and only its own.
    job = Principal("bob", frozenset(), job_function="acme/fn")
    assert data_files.list_files(store, data_files.provider_scope(job, "acme/fn")) == ["p.tar"]
    with pytest.raises(Forbidden):
        data_files.provider_scope(job, "acme/other")


def test_provider_calls_need_a_provider_function(client, data_fn):
    with pytest.raises(QiskitServerlessException, match="doesn't have a provider"):
        client.provider_files(data_fn)


def test_unknown_function_is_404(client):
    with pytest.raises(QiskitServerlessException, match="doesn't exist"):
        client.files("no-such-function")


@pytest.mark.skipif(not mount_namespaces_available(), reason="needs root and util-linux unshare")
def test_programs_share_literal_data_and_the_client_downloads(client, data_fn, reader_fn, tmp_path):
    writer = data_fn.run(name="from_job.tar")
    result = writer.result(cadence=1)
    assert result["data_path"] == "/data"
    assert "from_job.tar" in result["listing"]
    assert "from_job.tar" in client.files(data_fn)
    # Another function of the same user reads it; then writes a file the client downloads.
    reader = reader_fn.run(read="from_job.tar", write="shout.txt")
    assert reader.result(cadence=1)["payload"] == "written by a job"
    path = client.file_download("shout.txt", reader_fn, download_location=str(tmp_path))
    assert Path(path).read_text() == "WRITTEN BY A JOB"
    # Client upload -> program reads.
    make_tar(tmp_path / "from_client.tar", b"from the client")
    client.file_upload(str(tmp_path / "from_client.tar"), reader_fn)
    assert reader_fn.run(read="from_client.tar").result(cadence=1)["payload"] == "from the client"
    # The mount is the job's alone.
    assert not Path("/data/from_job.tar").exists()


@pytest.mark.skipif(not mount_namespaces_available(), reason="needs root and util-linux unshare")
def test_provider_function_reads_function_data(client, tmp_path):
    fn = client.upload(QiskitFunction(title="reader", provider="acme", entrypoint="read_function_data.py",
                                      working_dir=str(PROGRAMS / "data")))
    (tmp_path / "weights.json").write_text('{"w": [1, 2]}')
    client.provider_file_upload(str(tmp_path / "weights.json"), fn)
    assert client.provider_files("acme/reader") == ["weights.json"]
    assert client.files(fn) == []  # the user's space of a provider function is separate
    result = fn.run(name="weights.json").result(cadence=1)
    assert json.loads(result["content"]) == {"w": [1, 2]}
    assert result["provider_files"] == ["weights.json"]
    client.provider_file_delete("weights.json", fn)
    assert client.provider_files(fn) == []


def test_uploads_and_deletes_emit_events(client, prefect, data_fn, tmp_path):
    from prefect.events.filters import EventFilter, EventNameFilter

    make_tar(tmp_path / "evented.tar")
    client.file_upload(str(tmp_path / "evented.tar"), data_fn)
    client.file_delete("evented.tar", data_fn)
    deadline = time.monotonic() + 60
    while True:
        page = prefect.read_events(EventFilter(event=EventNameFilter(prefix=["qsflow.file."])), limit=50)
        events = [e for e in page.events if e.resource.get("prefect.resource.name") == "evented.tar"]
        kinds = sorted(e.event for e in events)
        if kinds == ["qsflow.file.deleted", "qsflow.file.uploaded"]:
            break
        assert time.monotonic() < deadline, kinds
        time.sleep(0.5)
    uploaded = next(e for e in events if e.event == "qsflow.file.uploaded")
    assert uploaded.resource["qsflow.function"] == "data-writer"
    assert uploaded.resource["qsflow.user"] == "local"
    assert uploaded.resource["qsflow.scope"] == "user"
    assert uploaded.payload["size"] == (tmp_path / "evented.tar").stat().st_size


def test_shared_server_maps_tokens_to_users_and_providers(client, prefect, tmp_path):
    """With a qsflow-users table, each token is a user: own spaces apart, provider spaces for members."""
    from prefect.blocks.system import Secret

    from deployments.access import USERS_BLOCK, token_key
    from deployments.connection import prefect_api
    from serverless_compat import ServerlessClient

    fn = client.upload(QiskitFunction(title="shared-fn", provider="acme", entrypoint="read_data.py",
                                      working_dir=str(PROGRAMS / "data")))
    with prefect_api(client.host):
        Secret(value={token_key("alice-token"): {"user": "alice", "providers": ["acme"]},
                      token_key("bob-token"): {"user": "bob", "providers": []}}).save(USERS_BLOCK)
    try:
        alice = ServerlessClient(host=client.host, token="alice-token")
        bob = ServerlessClient(host=client.host, token="bob-token")
        make_tar(tmp_path / "alice.tar")
        alice.file_upload(str(tmp_path / "alice.tar"))
        assert "alice.tar" in alice.files()
        assert "alice.tar" not in bob.files()
        alice.provider_file_upload(str(tmp_path / "alice.tar"), fn)
        assert alice.provider_files(fn) == ["alice.tar"]
        with pytest.raises(QiskitServerlessException, match="403"):
            bob.provider_files(fn)
        with pytest.raises(QiskitServerlessException, match="403"):
            bob.provider_file_download("alice.tar", fn, download_location=str(tmp_path))
        with pytest.raises(QiskitServerlessException, match="(?s)403.*not known"):
            ServerlessClient(host=client.host, token="mallory").files()
        with pytest.raises(QiskitServerlessException, match="(?s)403.*pass your token"):
            ServerlessClient(host=client.host).files()
        alice.provider_file_delete("alice.tar", fn)
        alice.file_delete("alice.tar")
    finally:
        _delete_users_block(client.host)


def _delete_users_block(host: str) -> None:
    from prefect.blocks.system import Secret

    from deployments.access import USERS_BLOCK
    from deployments.connection import prefect_api

    with prefect_api(host) as api:
        api.delete_block_document(Secret.load(USERS_BLOCK)._block_document_id)
