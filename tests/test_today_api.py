"""Today's Qiskit Serverless (0.35-0.37) on qsflow, in the style of its integration tests: upload a
program, run it, assert on status, result, logs, events and errors.

Jobs are few (each takes seconds here): one provider-function job that pauses while the test reads
its logs and queries the job lists, one program failing at import, one run created around the
client; everything else is checked without running anything.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from serverless_compat import QiskitFunction, QiskitServerlessException, ServerlessClient
from serverless_compat.job import Job

from conftest import PROGRAMS, bell

JOB_TIMEOUT = 300

SCHEMA = {
    "type": "object",
    "required": ["shots", "circuit", "release"],
    "properties": {
        "shots": {"type": "integer", "minimum": 1},
        # Qiskit objects reach the schema as the Runtime encoder writes them.
        "circuit": {"type": "object", "required": ["__type__", "__value__"],
                    "properties": {"__type__": {"const": "QuantumCircuit"}}},
        "release": {"type": "string"},
    },
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def today_fn(client):
    return client.upload(QiskitFunction(title="today-api", provider="acme", entrypoint="main.py",
                                        working_dir=str(PROGRAMS / "today"), arguments_schema=SCHEMA))


def _runs_of(prefect, full_title: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    from deployments.programs import deployment_name

    name = deployment_name(full_title).split("/")[1]
    return prefect.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])))


def _error_events(prefect, job_id: str, settle: float = 3.0) -> list:
    """The ``qsflow.job.error`` events of a job, through Prefect's events API (waits for the first)."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    def read():
        page = prefect.read_events(EventFilter(event=EventNameFilter(name=["qsflow.job.error"]),
                                               resource=EventResourceFilter(id=[f"prefect.flow-run.{job_id}"])),
                                   limit=20)
        return page.events

    deadline = time.monotonic() + 60
    while not read():
        assert time.monotonic() < deadline, f"no qsflow.job.error event for {job_id}"
        time.sleep(0.5)
    time.sleep(settle)  # a second event would have arrived by now
    return read()


# -- argument schemas (nothing runs) ---------------------------------------------------------------

def test_arguments_schema_is_stored_and_validates(client, prefect, today_fn):
    good = {"shots": 10, "circuit": bell(), "release": "/tmp/x"}
    assert today_fn.arguments_schema == SCHEMA
    assert today_fn.validate_arguments(good) == {"valid": True}

    fetched = client.function("acme/today-api")  # a function fetched later validates too
    assert fetched.arguments_schema == SCHEMA
    bad = {"shots": "many", "circuit": [1, 2], "extra": 1}
    with pytest.raises(QiskitServerlessException) as raised:
        fetched.validate_arguments(bad)
    text = str(raised.value)
    assert "| Code: 400" in text
    # every violation is listed, each with where it is
    assert "(4 problems)" in text
    for part in ("(arguments): 'release' is a required property",
                 "(arguments): Additional properties are not allowed ('extra' was unexpected)",
                 "circuit: [1, 2] is not of type 'object'",
                 "shots: 'many' is not of type 'integer'"):
        assert part in text, text
    assert client.validate_arguments("today-api", good, provider="acme") == {"valid": True}

    before = len(_runs_of(prefect, "acme/today-api"))
    with pytest.raises(QiskitServerlessException, match="shots: 0 is less than the minimum of 1"):
        today_fn.run(shots=0, circuit=bell(), release="/tmp/x")
    with pytest.raises(QiskitServerlessException, match="'release' is a required property"):
        client.run(fetched, arguments={"shots": 1, "circuit": bell()})
    with pytest.raises(QiskitServerlessException, match="'QuantumCircuit' was expected"):
        client.run("acme/today-api", arguments={"shots": 1, "circuit": 3.5 + 1j, "release": "r"})
    assert len(_runs_of(prefect, "acme/today-api")) == before  # nothing was queued


def test_schema_is_kept_on_reupload_removed_with_empty_and_checked_at_upload(client):
    spec = dict(title="schema-versions", entrypoint="echo.py", working_dir=str(PROGRAMS / "basic"))
    client.upload(QiskitFunction(**spec, arguments_schema={"required": ["x"]}))
    kept = client.upload(QiskitFunction(**spec))  # no schema given: the stored one stays
    assert kept.arguments_schema == {"required": ["x"]}
    with pytest.raises(QiskitServerlessException, match="'x' is a required property"):
        kept.validate_arguments({})
    removed = client.upload(QiskitFunction(**spec, arguments_schema={}))
    assert removed.arguments_schema is None
    assert removed.validate_arguments({"anything": 1}) == {"valid": True}
    assert client.function("schema-versions").version == "3"

    rejecting = client.upload(QiskitFunction(**spec, arguments_schema=False))
    with pytest.raises(QiskitServerlessException, match="the schema rejects every value"):
        rejecting.validate_arguments({})

    for schema, message in [({"type": "nope"}, "is not a valid JSON Schema"),
                            ([1], "an object \\(dict\\) or a boolean, not list"),
                            ({"$ref": "https://example.com/s.json"}, "Keep references inside the schema")]:
        with pytest.raises(QiskitServerlessException, match=message):
            client.upload(QiskitFunction(title="bad-schema", entrypoint="echo.py",
                                         working_dir=str(PROGRAMS / "basic"), arguments_schema=schema))
    with pytest.raises(QiskitServerlessException, match="Qiskit Function bad-schema doesn't exist."):
        client.function("bad-schema")


# -- client-side errors --------------------------------------------------------------------------

def test_client_errors_have_http_codes(client, today_fn):
    with pytest.raises(QiskitServerlessException) as raised:
        client.function("no-such-fn")
    assert str(raised.value) == ("\n| Message: Http bad request.\n| Code: 404\n| Details: "
                                 "Qiskit Function no-such-fn doesn't exist.")
    with pytest.raises(QiskitServerlessException, match="(?s)404.*Qiskit Function no-such-fn doesn't exist."):
        client.validate_arguments("no-such-fn", {})
    with pytest.raises(QiskitServerlessException, match="(?s)404.*Qiskit Function no-such-fn doesn't exist."):
        client.jobs(function="no-such-fn")
    with pytest.raises(QiskitServerlessException, match="(?s)Code: 400.*Unknown job status 'FINISHED'"):
        client.jobs(status="FINISHED")
    with pytest.raises(QiskitServerlessException, match="(?s)Code: 400.*not an ISO 8601 time"):
        client.jobs(created_after="yesterday")
    with pytest.raises(QiskitServerlessException, match="(?s)Code: 400.*Cannot encode"):
        today_fn.run(shots=1, circuit=object(), release="r")


# -- one provider-function job, one import failure, one run created around the client ----------

@pytest.fixture(scope="module")
def jobs(client, prefect_module, today_fn, tmp_path_factory):
    """Start the three jobs at once; the first waits for its release file."""
    release = tmp_path_factory.mktemp("release") / "go"
    broken = client.upload(QiskitFunction(title="import-error", entrypoint="main.py",
                                          working_dir=str(PROGRAMS / "import_error")))
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    main = today_fn.run(shots=100, circuit=bell(), release=str(release))
    failing = broken.run()
    # A run created with the Prefect API directly, bypassing the client's check: the runner refuses it.
    from deployments.programs import read_deployment

    deployment = read_deployment(prefect_module, "acme/today-api")
    around = prefect_module.create_flow_run_from_deployment(
        deployment.id, parameters={"arguments": {"shots": "many"}})
    yield {"main": main, "failing": failing, "around": Job(str(around.id), job_service=client),
           "release": release, "started": started, "broken_fn": broken}
    release.touch()


@pytest.fixture(scope="module")
def prefect_module(client):
    from deployments.connection import prefect_api

    with prefect_api(client.host) as api:
        yield api


def test_logs_of_a_running_job_and_job_queries(client, today_fn, jobs, request):
    main, failing, started = jobs["main"], jobs["failing"], jobs["started"]
    request.addfinalizer(jobs["release"].touch)  # a failure here must not leave the job waiting for the others
    deadline = time.monotonic() + JOB_TIMEOUT
    while "waiting for release" not in main.logs():
        assert time.monotonic() < deadline, main.logs()
        assert main.status() not in ("DONE", "ERROR", "CANCELED"), main.logs()
        time.sleep(0.5)
    assert main.status() == "RUNNING"  # the logs were read while it runs

    # user logs: `LEVEL: message`, one line per line, in order with print; no provider lines
    logs = main.logs()
    assert ("print before\nINFO: first line\nINFO: second line\nprint between\nERROR: an error line\n"
            "waiting for release\n") in logs, logs
    assert "provider only" not in logs and "secret detail" not in logs
    assert main.filtered_logs(include="^INFO:") == "INFO: first line\nINFO: second line\n"
    assert main.filtered_logs(include="^print|^ERROR:", exclude="between") == "print before\nERROR: an error line\n"
    assert main.provider_logs() == "WARNING: provider only\nWARNING: secret detail\n"

    assert failing.wait(timeout=JOB_TIMEOUT) == "ERROR"
    # The run created around the client is a job too (the runner tags it as the local user's), refused: ERROR.
    around = jobs["around"]
    assert around.wait(timeout=JOB_TIMEOUT) == "ERROR"
    ids = lambda found: [j.job_id for j in found]  # noqa: E731
    assert ids(client.jobs(created_after=started)) == [around.job_id, failing.job_id, main.job_id]  # newest first
    assert ids(client.jobs(created_after=started.isoformat(), limit=1)) == [around.job_id]
    assert ids(client.jobs(created_after=started, limit=1, offset=1)) == [failing.job_id]
    assert ids(client.jobs(created_after=started, status="RUNNING")) == [main.job_id]
    assert ids(client.jobs(created_after=started, status="ERROR")) == [around.job_id, failing.job_id]
    assert ids(client.jobs(created_after=started, status="FAILED")) == [around.job_id, failing.job_id]  # gateway name
    assert client.jobs(created_after=started, status="DONE") == []
    assert client.jobs(created_after=started, status="RUNNING: MAPPING") == []
    assert client.jobs(created_after=datetime.now(timezone.utc) + timedelta(minutes=5)) == []
    assert ids(today_fn.jobs(created_after=started)) == [around.job_id, main.job_id]
    assert ids(today_fn.get_jobs(created_after=started)) == [around.job_id, main.job_id]
    assert ids(jobs["broken_fn"].jobs(limit=5, created_after=started)) == [failing.job_id]
    assert ids(client.get_jobs(function=today_fn, created_after=started)) == [around.job_id, main.job_id]
    assert ids(client.provider_jobs(today_fn, created_after=started, status="RUNNING")) == [main.job_id]
    assert client.get_job_by_id(main.job_id).job_id == main.job_id
    assert [f.title for f in client.list()] == [f.title for f in client.functions()]
    assert client.get("acme/today-api").arguments_schema == SCHEMA

    jobs["release"].touch()
    assert main.result(cadence=1) == {"shots": 100, "qubits": 2, "released": True}
    assert main.status() == "DONE"
    assert ids(client.jobs(created_after=started, status="DONE")) == [main.job_id]
    assert ids(client.jobs(created_after=started, status="SUCCEEDED")) == [main.job_id]


def test_send_error_event_of_a_done_job(prefect, jobs):
    main = jobs["main"]
    assert main.wait(timeout=JOB_TIMEOUT) == "DONE"
    [event] = main.events(type="ERROR")
    assert event.data == {"code": "E7", "message": "a recoverable problem", "exception": "TimeoutError",
                          "args": {"attempt": 1}}
    assert main.events() == [event]
    assert main.error_message() == ""
    [prefect_event] = _error_events(prefect, main.job_id)
    assert prefect_event.payload == event.data
    assert prefect_event.resource["qsflow.function"] == "acme/today-api"
    with pytest.raises(QiskitServerlessException, match=r"Type is not valid. Valid types: \['ERROR'\]"):
        main.events(type="INFO")


def test_program_failing_at_import_is_one_error(prefect, jobs):
    failing = jobs["failing"]
    assert failing.wait(timeout=JOB_TIMEOUT) == "ERROR"
    expected = {"code": "1", "message": "ImportError: attempted relative import with no known parent package",
                "exception": "ImportError"}
    [event] = failing.events(type="ERROR")  # one event, never two
    assert event.data == expected
    text = ("\n| Message: ImportError: attempted relative import with no known parent package"
            "\n| Code: 1\n| Exception: ImportError")
    with pytest.raises(QiskitServerlessException) as raised:
        failing.result()
    assert str(raised.value) == text
    assert failing.error_message() == text
    assert "Traceback" in failing.logs()
    [prefect_event] = _error_events(prefect, failing.job_id)
    assert prefect_event.payload == expected


def test_runner_refuses_a_run_that_bypassed_the_client(jobs):
    around = jobs["around"]
    assert around.wait(timeout=JOB_TIMEOUT) == "ERROR"
    message = around.error_message()
    assert "do not match the function's arguments_schema" in message
    assert "shots: 'many' is not of type 'integer'" in message
    assert "'circuit' is a required property" in message


def test_other_users_get_403_for_a_job(client, prefect, jobs, today_fn):
    """With a users table: another user may not see the job; a provider member sees it, not its result."""
    from prefect.blocks.system import Secret

    from deployments.access import USERS_BLOCK, token_key
    from deployments.connection import prefect_api

    main = jobs["main"]
    assert main.wait(timeout=JOB_TIMEOUT) == "DONE"
    with prefect_api(client.host):
        Secret(value={token_key("alice-token"): {"user": "alice", "providers": ["acme"]},
                      token_key("bob-token"): {"user": "bob", "providers": []}}).save(USERS_BLOCK)
    try:
        bob = ServerlessClient(host=client.host, token="bob-token")
        alice = ServerlessClient(host=client.host, token="alice-token")
        forbidden = f"You don't have access to job [{main.job_id}]"
        with pytest.raises(QiskitServerlessException, match=r"(?s)Code: 403.*" + re.escape(forbidden)):
            bob.job(main.job_id)
        as_bob = Job(main.job_id, job_service=bob)
        for call in (as_bob.status, as_bob.result, as_bob.events, as_bob.stop, as_bob.provider_logs):
            with pytest.raises(QiskitServerlessException, match="403"):
                call()
        with pytest.raises(QiskitServerlessException, match="You don't have access to read user logs"):
            as_bob.logs()
        assert main.job_id not in [j.job_id for j in bob.jobs()]
        with pytest.raises(QiskitServerlessException, match="403"):
            bob.provider_jobs(today_fn)

        as_alice = alice.job(main.job_id)  # a member of the function's provider
        assert as_alice.status() == "DONE"
        assert as_alice.provider_logs() == "WARNING: provider only\nWARNING: secret detail\n"
        with pytest.raises(QiskitServerlessException, match="403"):
            as_alice.result()  # the result is the user's
        assert main.job_id in [j.job_id for j in alice.provider_jobs(today_fn, limit=50)]
        assert main.job_id not in [j.job_id for j in alice.jobs(limit=50)]  # not alice's own job
    finally:
        with prefect_api(client.host) as api:
            api.delete_block_document(Secret.load(USERS_BLOCK)._block_document_id)


# -- dependency policy (nothing runs) ------------------------------------------------------------

def test_dependency_allow_list(client):
    from prefect.variables import Variable

    from deployments.connection import prefect_api
    from deployments.dependency_policy import ALLOWLIST_VARIABLE

    spec = dict(entrypoint="echo.py", working_dir=str(PROGRAMS / "basic"))
    # off by default: any valid requirement is accepted
    assert client.upload(QiskitFunction(title="deps-open", dependencies=["tomli-w==1.0.0"], **spec)).version
    # set the way the README says, with Prefect's CLI
    subprocess.run([sys.executable, "-m", "prefect", "variable", "set", ALLOWLIST_VARIABLE,
                    '["tomli-w==1.0.0", "mthree>=2.6"]'], check=True, capture_output=True,
                   env={**os.environ, "PREFECT_API_URL": client.host})
    try:
        with pytest.raises(QiskitServerlessException, match="(?s)Code: 400.*Dependency `scipy` is not allowed"):
            client.upload(QiskitFunction(title="deps-refused", dependencies=["tomli-w==1.0.0", "scipy==1.13.0"],
                                         **spec))
        with pytest.raises(QiskitServerlessException,
                           match=r"Dependency \(tomli-w\) version \(1.0.1\) is not allowed. Valid versions: tomli-w==1.0.0"):
            client.upload(QiskitFunction(title="deps-refused", dependencies=["tomli-w==1.0.1"], **spec))
        with pytest.raises(QiskitServerlessException, match="Qiskit Function deps-refused doesn't exist."):
            client.function("deps-refused")
        allowed = client.upload(QiskitFunction(title="deps-allowed", dependencies=["Tomli_W==1.0.0", "mthree"],
                                               **spec))
        assert allowed.dependencies == ["Tomli_W==1.0.0", "mthree"]
        with prefect_api(client.host):
            Variable.set(ALLOWLIST_VARIABLE, "# requirements.txt text works too\nmthree==3.0.0\n", overwrite=True)
        with pytest.raises(QiskitServerlessException, match="Dependency `tomli-w` is not allowed"):
            client.upload(QiskitFunction(title="deps-refused", dependencies=["tomli-w==1.0.0"], **spec))
    finally:
        with prefect_api(client.host):
            Variable.unset(ALLOWLIST_VARIABLE)
    assert client.upload(QiskitFunction(title="deps-refused", dependencies=["scipy==1.13.0"], **spec)).version == "1"


@pytest.mark.parametrize("job_status", ["QUEUED", "INITIALIZING", "RUNNING", "RUNNING: MAPPING",
                                        "RUNNING: WAITING_FOR_QPU", "DONE", "ERROR", "CANCELED",
                                        "SUCCEEDED", "FAILED", "STOPPED", "PENDING", "MAPPING"])
def test_status_filter_is_the_status_map_read_backwards(job_status):
    """Every state a status filter selects reads back as that status (one status map)."""
    from flows import status

    wanted = status._GATEWAY_NAMES.get(job_status, job_status)
    wanted = status.SUB_STATUSES.get(wanted, wanted)
    types, names = status.state_filter(job_status)
    for state_type in types:
        for name in names or [None]:
            read = status.to_job_status(state_type, name)
            assert read == wanted or (wanted == "RUNNING" and read.startswith("RUNNING: ")), (state_type, name)
    # and every state reading as that status is selected
    all_states = [(t, None) for t in ("SCHEDULED", "PENDING", "PAUSED", "COMPLETED", "FAILED", "CRASHED",
                                      "CANCELLED", "CANCELLING")]
    all_states += [("RUNNING", n) for n in ("Running", "INITIALIZING", "RUNNING", *status.SUB_STATUSES.values())]
    for state_type, name in all_states:
        read = status.to_job_status(state_type, name)
        if read == wanted or (wanted == "RUNNING" and read.startswith("RUNNING: ")):
            assert state_type in types and (names is None or name in names), (state_type, name)
