"""Existing Qiskit Serverless code on qsflow: the names, loggers, error events, Runtime service."""

from __future__ import annotations

import inspect

import pytest

from serverless_compat import QiskitFunction, QiskitServerlessException

from conftest import PROGRAMS

JOB_TIMEOUT = 240

# Every name today's qiskit_serverless exports (plus the seed era's LocalClient), with the
# parameters Qiskit Serverless documents for the callables.
NAMES = {
    "ServerlessClient": ["host", "version", "token", "instance", "channel"],
    "IBMServerlessClient": ["token", "name", "instance", "channel"],
    "LocalClient": [],
    "BaseClient": None,
    "QiskitFunction": ["title", "provider", "entrypoint", "working_dir", "env_vars", "dependencies"],
    "QiskitPattern": None,
    "Job": ["job_id", "job_service", "raw_data"],
    "Configuration": ["workers", "min_workers", "max_workers", "auto_scaling"],
    "get_arguments": [],
    "save_result": ["result"],
    "update_status": ["status"],
    "distribute_task": ["target"],
    "distribute_qiskit_function": ["provider", "dependencies", "working_dir"],
    "get": ["object_refs"],
    "put": ["value"],
    "get_refs_by_status": ["object_refs"],
    "is_running_in_serverless": [],
    "is_trial": [],
    "get_runtime_service": ["channel", "token", "instance", "url"],
    "send_error": ["code", "message", "exception", "args"],
    "ServerlessError": ["code", "message", "details"],
    "QiskitServerlessException": None,
    "ServerlessRuntimeService": None,
    "get_logger": [],
    "get_provider_logger": [],
    "__version__": None,
}

CLIENT_METHODS = {
    "upload": ["program"], "functions": [], "list": [], "function": ["title", "provider"],
    "get": ["title", "provider"], "run": ["program", "arguments", "config", "provider"],
    "jobs": ["function"], "provider_jobs": ["function"], "job": ["job_id"], "files": ["function"],
    "provider_files": ["function"], "file_upload": ["file", "function"],
    "file_download": ["file", "function", "target_name", "download_location"],
    "file_delete": ["file", "function"], "provider_file_upload": ["file", "function"],
    "provider_file_download": ["file", "function", "target_name", "download_location"],
    "provider_file_delete": ["file", "function"],
}

JOB_METHODS = {
    "status": [], "stop": ["service"], "cancel": ["service"], "result": ["wait", "cadence", "verbose", "maxwait"],
    "logs": [], "provider_logs": [], "filtered_logs": ["include", "exclude"], "events": ["type"],
    "in_terminal_state": [], "error_message": [], "runtime_jobs": ["runtime_session"], "runtime_sessions": [],
}


def _params(obj) -> list[str]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    return [p for p in inspect.signature(target).parameters if p not in {"self", "kwargs", "args"} or
            (p == "args" and obj.__name__ == "send_error")]


@pytest.fixture(scope="module")
def qiskit_serverless():
    import serverless_compat

    serverless_compat.install_as_qiskit_serverless()
    import qiskit_serverless

    return qiskit_serverless


@pytest.mark.parametrize("name, params", NAMES.items())
def test_every_name_imports_with_its_documented_parameters(qiskit_serverless, name, params):
    obj = getattr(qiskit_serverless, name)
    if params is not None:
        assert _params(obj)[: len(params)] == params


@pytest.mark.parametrize("name, params", CLIENT_METHODS.items())
def test_client_methods(qiskit_serverless, name, params):
    assert _params(getattr(qiskit_serverless.ServerlessClient, name))[: len(params)] == params


@pytest.mark.parametrize("name, params", JOB_METHODS.items())
def test_job_methods(qiskit_serverless, name, params):
    assert _params(getattr(qiskit_serverless.Job, name))[: len(params)] == params


def test_pattern_and_title_with_provider(qiskit_serverless):
    fn = qiskit_serverless.QiskitPattern(title="acme/fn", entrypoint="p.py")
    assert isinstance(fn, qiskit_serverless.QiskitFunction)
    assert (fn.provider, fn.title) == ("acme", "fn")
    with pytest.raises(ValueError, match="only contain one slash"):
        qiskit_serverless.QiskitFunction(title="a/b/c")


def test_loggers_of_a_users_own_function(client):
    fn = client.upload(QiskitFunction(title="loggers", entrypoint="loggers.py", working_dir=str(PROGRAMS / "compat")))
    job = fn.run()
    assert job.wait(timeout=JOB_TIMEOUT) == "DONE"
    logs = job.logs()
    assert "plain print\nINFO: for the user\nINFO: second line\nWARNING: for the provider\n" in logs
    assert "[PUBLIC]" not in logs and "[PRIVATE]" not in logs
    assert job.filtered_logs(include="INFO") == "INFO: for the user\nINFO: second line\n"
    assert job.filtered_logs(exclude="INFO|plain") == "WARNING: for the provider\n"
    with pytest.raises(QiskitServerlessException, match="403"):
        job.provider_logs()  # not a provider function


def test_provider_logger_lines_reach_only_the_provider(client):
    fn = client.upload(QiskitFunction(title="loggers", provider="acme", entrypoint="loggers.py",
                                      working_dir=str(PROGRAMS / "compat")))
    job = fn.run()
    assert job.wait(timeout=JOB_TIMEOUT) == "DONE"
    assert "for the provider" not in job.logs()
    assert "INFO: for the user" in job.logs()
    assert job.provider_logs() == "WARNING: for the provider\n"
    assert job.job_id in [j.job_id for j in client.provider_jobs(fn)]


@pytest.fixture(scope="module")
def errors_fn(client):
    return client.upload(QiskitFunction(title="errors", entrypoint="errors.py", working_dir=str(PROGRAMS / "compat")))


def test_send_error_records_an_event_and_the_program_goes_on(errors_fn):
    job = errors_fn.run(mode="send")
    assert job.result(cadence=1) == {"went_on": True}
    [event] = job.events(type="ERROR")
    assert event.data == {"code": "E100", "message": "a recoverable problem", "exception": "TimeoutError",
                          "args": {"attempt": 2}}
    assert job.error_message() == ""  # the job itself is DONE
    with pytest.raises(QiskitServerlessException, match=r"Type is not valid. Valid types: \['ERROR'\]"):
        job.events(type="WARNING")


def test_serverless_error_becomes_one_event_in_qs_format(errors_fn):
    job = errors_fn.run(mode="serverless_error")
    assert job.wait(timeout=JOB_TIMEOUT) == "ERROR"
    [event] = job.events(type="ERROR")
    assert event.data["code"] == "E42" and event.data["exception"] == "ServerlessError"
    expected = ("\n| Message: the backend is not reachable\n| Code: E42\n| Exception: ServerlessError"
                "\n| Details:\n|   - backend: fake_kyiv")
    assert job.error_message() == expected
    with pytest.raises(QiskitServerlessException) as raised:
        job.result()
    assert str(raised.value) == expected


def test_uncaught_exception_event(errors_fn):
    job = errors_fn.run(mode="value_error")
    assert job.wait(timeout=JOB_TIMEOUT) == "ERROR"
    [event] = job.events(type="ERROR")
    assert event.data == {"code": "1", "message": "ValueError: bad input 7", "exception": "ValueError"}
    assert "Traceback" in job.logs()


def test_error_of_a_program_without_the_shim(client):
    fn = client.upload(QiskitFunction(title="no-shim", entrypoint="no_shim.py", working_dir=str(PROGRAMS / "compat")))
    job = fn.run()
    assert job.wait(timeout=JOB_TIMEOUT) == "ERROR"
    [event] = job.events(type="ERROR")
    assert event.data == {"code": "1", "message": "KeyError: 'missing'", "exception": "KeyError"}


def test_runtime_service_offline_is_the_local_service(client):
    fn = client.upload(QiskitFunction(title="runtime-local", entrypoint="runtime_local.py",
                                      working_dir=str(PROGRAMS / "compat")))
    job = fn.run()
    assert job.result(cadence=1) == {"service": "LocalServerlessRuntimeService", "shots": 200}
    assert job.runtime_jobs() == [] and job.runtime_sessions() == []


def test_distribute_qiskit_function_runs_child_jobs_as_subflows(client, prefect):
    fn = client.upload(QiskitFunction(title="parent", entrypoint="parent.py",
                                      working_dir=str(PROGRAMS / "child_jobs")))
    job = fn.run()
    assert job.wait(timeout=JOB_TIMEOUT * 2) == "DONE", job.logs()
    assert job.result() == {"children": [{"square": 9}, {"square": 16}]}
    children = client.jobs(function="square", limit=5)
    assert len(children) >= 2
    for child in children[:2]:
        flow_run = prefect.read_flow_run(child.job_id)
        assert flow_run.parent_task_run_id is not None
        assert str(prefect.read_task_run(flow_run.parent_task_run_id).flow_run_id) == job.job_id


def test_distribute_qiskit_function_takes_keyword_arguments_only():
    from serverless_compat import distribute_qiskit_function

    @distribute_qiskit_function()
    def double(x):
        return 2 * x

    with pytest.raises(TypeError, match=r"pass its arguments by keyword, e.g. double\(x=1\)"):
        double(1)
