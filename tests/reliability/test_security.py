"""Security, on the tests' embedded Prefect server: an IBM Quantum token stays in its Secret block, and a
program reaches no data it was not granted, neither through the qsflow API nor by path on this machine.

Tar slip is in test_program_archive.py; a server that requires auth in test_prefect_auth.py.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deployments import data_files
from deployments.access import Principal, ibm_credentials_block
from flows.data_mounts import mount_namespaces_available
from serverless_compat import QiskitFunction, ServerlessClient

from conftest import PROGRAMS, job_status_events

RELIABILITY = PROGRAMS / "reliability"
INSTANCE = "crn:v1:bluemix:public:quantum-computing:us-east:a/qsflowtest::"


def _everything_prefect_recorded(prefect, job_id: str, since: datetime) -> dict[str, str]:
    """The job's flow run, state history, logs, artifacts, and every event since ``since``, as text."""
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, LogFilter,
                                                LogFilterFlowRunId)
    from prefect.events.filters import EventFilter, EventOccurredFilter

    flow_run = prefect.read_flow_run(job_id)
    logs = prefect.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])), limit=200)
    artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))
    page = prefect.read_events(EventFilter(occurred=EventOccurredFilter(since=since)), limit=50)
    events = list(page.events)
    while page.next_page:
        page = prefect.read_events_page(str(page.next_page))
        events.extend(page.events)
    return {
        "flow run": flow_run.model_dump_json(),
        "states": json.dumps([s.model_dump(mode="json") for s in prefect.read_flow_run_states(job_id)]),
        "logs": json.dumps([record.model_dump(mode="json") for record in logs]),
        "artifacts": json.dumps([a.model_dump(mode="json") for a in artifacts]),
        "events": json.dumps([e.model_dump(mode="json") for e in events]),
        "counts": f"{len(logs)} logs, {len(artifacts)} artifacts, {len(events)} events",
    }


def test_ibm_token_lives_in_a_secret_block_only(client, prefect, qsflow_home):
    from prefect.blocks.system import Secret

    from deployments.connection import prefect_api

    token = f"ibm-token-{uuid.uuid4().hex}"
    since = datetime.now(timezone.utc)
    # Qiskit Serverless's form: ServerlessClient(token=<IBM Quantum API key>, instance=<CRN>).
    ibm = ServerlessClient(host=client.host, token=token, instance=INSTANCE)
    block = ibm_credentials_block("local")
    try:
        with prefect_api(client.host):
            assert Secret.load(block).get() == {"token": token, "instance": INSTANCE, "channel": ""}
        # Read back as the Prefect UI reads it: obfuscated.
        assert token not in prefect.read_block_document_by_name(block, "secret", include_secrets=False).model_dump_json()

        function = ibm.upload(QiskitFunction(title="uses-ibm-token", entrypoint="ibm_token.py",
                                             working_dir=str(RELIABILITY)))
        job = function.run(shots=10)
        result = job.result(cadence=1)
        assert job.status() == "DONE", job.logs()
        # The job got the token (QISKIT_IBM_TOKEN, from the block) ...
        assert result["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
        assert "token given to the job: True instance: True" in job.logs()
        # ... and nothing Prefect recorded holds it (its events are stored in batches: once its DONE is).
        job_status_events(prefect, job.job_id, until="DONE")
        recorded = _everything_prefect_recorded(prefect, job.job_id, since)
        assert "WAITING_FOR_QPU" in recorded["states"] and "runtime service" in recorded["logs"]
        assert recorded["artifacts"] != "[]" and "qsflow.job.status" in recorded["events"], recorded["counts"]
        for what, text in recorded.items():
            assert token not in text, what
        # Nor does Prefect's database (its block data is encrypted) or the server's and worker's logs.
        files = [p for p in qsflow_home.glob("prefect.db*")] + list(qsflow_home.glob("*.log"))
        assert any(p.name == "prefect.db" for p in files)
        for path in files:
            assert token.encode() not in path.read_bytes(), path
    finally:
        with prefect_api(client.host) as api:
            api.delete_block_document(api.read_block_document_by_name(block, "secret").id)


def test_a_qsflow_token_alone_is_not_kept_as_ibm_credentials(client, prefect):
    """Without an instance or IBM channel the token is a qsflow identity or auth string (README): nothing is saved."""
    from prefect.exceptions import ObjectNotFound

    ServerlessClient(host=client.host, token="qsflow-identity-token")
    with pytest.raises(ObjectNotFound):
        prefect.read_block_document_by_name(ibm_credentials_block("local"), "secret")


@pytest.fixture(scope="module")
def spaces(client, tmp_path_factory):
    """Files in spaces the prober's jobs were not granted, and one in its own provider space."""
    folder = tmp_path_factory.mktemp("spaces")
    store = client._store
    placed = {}
    for kind, principal, function, name in [
        ("other user", Principal("bob"), None, "bob-secret.txt"),
        ("own user space of plain functions", Principal("local"), None, "local-plain.txt"),
        ("same provider, other function", Principal("local"), "acme/other-fn", "other-fn.txt"),
        ("other provider", Principal("local"), "rival/fn", "rival.txt"),
    ]:
        (folder / name).write_text(f"content of {name}")
        scope = (data_files.user_scope(principal, None) if function is None
                 else data_files.provider_scope(principal, function))
        data_files.upload(store, scope, folder / name)
        placed[kind] = Path(store.local_path(f"{scope.folder}/{name}"))
    for provider, title in (("acme", "other-fn"), ("rival", "fn")):
        client.upload(QiskitFunction(title=title, provider=provider, entrypoint="probe.py", working_dir=str(RELIABILITY)))
    prober = client.upload(QiskitFunction(title="prober", provider="acme", entrypoint="probe.py",
                                          working_dir=str(RELIABILITY)))
    (folder / "granted.txt").write_text("content of granted.txt")
    client.provider_file_upload(str(folder / "granted.txt"), prober)
    placed["granted"] = Path(store.local_path("data/providers/acme/prober/granted.txt"))
    assert all(path.is_file() for path in placed.values())
    yield prober, placed
    for path in placed.values():
        path.unlink(missing_ok=True)


@pytest.mark.skipif(not mount_namespaces_available(), reason="needs root and util-linux unshare")
def test_a_program_reaches_only_its_granted_files(spaces):
    prober, placed = spaces
    denied = [str(path) for kind, path in placed.items() if kind != "granted"]
    tricks = ["/data/../users/bob/bob-secret.txt", "/function_data/../other-fn/other-fn.txt",
              "/function_data/../../users/bob/bob-secret.txt",
              str(placed["granted"].parent / ".." / "other-fn" / "other-fn.txt"),
              str(placed["granted"].parents[3] / "users" / "bob" / "bob-secret.txt")]
    calls = [
        ["own provider files", "provider_files", ["acme/prober"]],
        ["other function's provider files", "provider_files", ["acme/other-fn"]],
        ["other function's file download", "provider_file_download", ["other-fn.txt", "acme/other-fn", None, "/tmp"]],
        ["other provider's files", "provider_files", ["rival/fn"]],
        ["../ name", "file_download", ["../bob/bob-secret.txt", "acme/prober"]],
        ["../ name in provider space", "provider_file_download", ["../other-fn/other-fn.txt", "acme/prober"]],
    ]
    job = prober.run(paths=["/function_data/granted.txt", str(placed["granted"])] + denied + tricks, calls=calls)
    result = job.result(cadence=1)
    assert job.status() == "DONE", job.logs()
    paths, answers = result["paths"], result["calls"]
    assert paths["/function_data/granted.txt"] == "read: content of granted.txt"
    assert paths[str(placed["granted"])] == "read: content of granted.txt"  # its own space by its real path too
    for path in denied + tricks:
        assert paths[path].startswith(("FileNotFoundError", "PermissionError")), (path, paths[path])
    assert answers["own provider files"] == "allowed: ['granted.txt']"
    for label in ("other function's provider files", "other function's file download", "other provider's files"):
        assert "403" in answers[label] and "don't have access" in answers[label], (label, answers[label])
    for label in ("../ name", "../ name in provider space"):
        assert "Invalid file name" in answers[label], (label, answers[label])
    # The files are all still there, unchanged.
    assert all(path.read_text() == f"content of {path.name}" for path in placed.values())
