"""The pieces of every generation's program contract, without a job: the job's gateway endpoints (a real
HTTP server on 127.0.0.1), the stdout result marker, where arguments are offered, circuits re-encoded
for an older Qiskit, and how a pinned release's environment is resolved.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from qiskit import QuantumCircuit, qpy

from flows import job_gateway, program_contract
from flows.pinned_releases import install_options, pinned_release
from serverless_compat import serialization

JOB = "0b7e2c1e-1111-4222-8333-944455556666"


@pytest.fixture
def gateway(tmp_path):
    calls: list[str] = []
    answers = {"MAPPING": True, "WAITING_QPU": False}

    def set_sub_status(sub_status: str) -> bool:
        calls.append(sub_status)
        return answers[sub_status]

    with job_gateway.serve(JOB, tmp_path / "results.json", set_sub_status) as served:
        yield served, calls, tmp_path / "results.json"


def _call(served, method: str, action: str, data: dict, token: str | None = None, job: str = JOB, version="v1"):
    headers = {"Authorization": f"Bearer {served.token if token is None else token}"} if token != "" else {}
    return httpx.request(method, f"{served.url}/api/{version}/jobs/{job}/{action}/", data=data, headers=headers)


def test_gateway_saves_a_posted_result_and_sets_a_sub_status(gateway):
    served, calls, results = gateway
    text = serialization.dumps({"circuit": _circuit(), "n": 3})
    response = _call(served, "POST", "result", {"result": text})
    assert response.status_code == 200, response.text
    assert results.read_text() == text
    assert serialization.loads(results.read_text())["circuit"] == _circuit()

    response = _call(served, "PATCH", "sub_status", {"sub_status": "MAPPING"})
    assert response.status_code == 200
    assert response.json()["job"]["sub_status"] == "MAPPING"
    assert calls == ["MAPPING"]


def test_gateway_refuses_what_its_job_does_not_allow(gateway):
    served, calls, results = gateway
    assert _call(served, "POST", "result", {"result": "{}"}, token="other").status_code == 401
    assert _call(served, "POST", "result", {"result": "{}"}, token="").status_code == 401
    assert _call(served, "POST", "result", {"result": "{}"}, job="another-job").status_code == 404
    assert _call(served, "GET", "result", {}).status_code == 405
    assert _call(served, "POST", "result", {"result": "not json"}).status_code == 400
    assert _call(served, "PATCH", "sub_status", {"sub_status": "DANCING"}).status_code == 400
    assert _call(served, "PATCH", "sub_status", {}).status_code == 400
    refused = _call(served, "PATCH", "sub_status", {"sub_status": "WAITING_QPU"})  # the job is not running
    assert refused.status_code == 403 and "not running" in refused.json()["message"]
    other = httpx.get(f"{served.url}/api/v1/jobs/", headers={"Authorization": f"Bearer {served.token}"})
    assert other.status_code == 404
    assert calls == ["WAITING_QPU"]
    assert not results.exists()


def test_gateway_variables_and_proxy(gateway):
    served, _, _ = gateway
    env = served.env({})
    assert env == {"ENV_JOB_GATEWAY_HOST": served.url, "ENV_JOB_GATEWAY_TOKEN": served.token,
                   "ENV_JOB_ID_GATEWAY": JOB}
    assert served.url.startswith("http://127.0.0.1:")
    env = served.env({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "example.org"})
    assert env["NO_PROXY"] == "example.org,127.0.0.1" and env["no_proxy"] == "127.0.0.1"


def test_stdout_marker_becomes_the_result_and_leaves_the_logs(tmp_path):
    results = tmp_path / "results.json"
    marker = program_contract.ResultMarker(results)
    # What `print(f"\nSaved Result:{record}:End Saved Result\n")` writes after a line of output.
    output = ["before", "", 'Saved Result:{"a": [1, 2], "s": "x:End Saved Result"}:End Saved Result', "", "after"]
    kept = [line for raw in output for line in marker.feed(raw)] + marker.flush()
    assert kept == ["before", "after"]
    assert json.loads(results.read_text()) == {"a": [1, 2], "s": "x:End Saved Result"}

    other = program_contract.ResultMarker(tmp_path / "other.json")
    lines = ["", "", "Saved Result:not json:End Saved Result", "x", ""]
    assert [line for raw in lines for line in other.feed(raw)] + other.flush() == lines
    assert not (tmp_path / "other.json").exists()


def test_arguments_are_offered_where_every_generation_looks(tmp_path):
    work, data = tmp_path / "work", tmp_path / "data"
    work.mkdir()
    data.mkdir()
    text = json.dumps({"x": 1})
    logged: list[str] = []
    with program_contract.arguments_offered(text, JOB, arguments_path=tmp_path / "job" / "arguments.json",
                                            work_dir=work, data_dir=data, log=logged.append) as env:
        assert env == {"ENV_JOB_ARGUMENTS": text}  # <= 0.16
        assert (work / "arguments.serverless").read_text() == text  # 0.17 - 0.25
        assert (data / "arguments" / f"{JOB}.json").read_text() == text  # 0.26 - 0.31
        assert (tmp_path / "job" / "arguments.json").read_text() == text  # 0.32 on
    assert not (data / "arguments").exists()
    assert logged == []

    large = json.dumps({"x": "y" * program_contract.ENV_ARGUMENTS_LIMIT})
    with program_contract.arguments_offered(large, JOB, arguments_path=tmp_path / "a.json", work_dir=work,
                                            data_dir=data, log=logged.append) as env:
        assert env == {}
    assert "too large for the ENV_JOB_ARGUMENTS variable" in logged[0]


def _circuit() -> QuantumCircuit:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    return circuit


def test_circuits_are_re_encoded_for_an_older_qiskit():
    arguments = serialization.to_jsonable({"circuit": _circuit(), "nested": {"list": [_circuit()]}, "n": 2})
    newest = serialization.qpy_version_in(json.dumps(arguments))
    assert newest > 13
    text = program_contract.encode_arguments(arguments, qpy_version=13)
    assert serialization.qpy_version_in(text) == 13
    decoded = serialization.loads(text)
    assert decoded == {"circuit": _circuit(), "nested": {"list": [_circuit()]}, "n": 2}
    assert program_contract.encode_arguments(arguments, qpy_version=None) == json.dumps(arguments)
    assert program_contract.encode_arguments({"n": 1}, qpy_version=13) == '{"n": 1}'
    with pytest.raises(ValueError, match=r"qiskit>=1\.3"):
        program_contract.encode_arguments(arguments, qpy_version=qpy.QPY_COMPATIBILITY_VERSION - 1)


def test_a_pinned_release_resolves_as_of_its_publication():
    assert pinned_release(["numpy", "qiskit-serverless==0.22.0"]) == "0.22.0"
    assert pinned_release(["qiskit_serverless>=0.22"]) is None
    assert install_options(["qiskit-serverless==0.22.0"]) == (["--exclude-newer", "2025-05-08"], [])
    # Packages the user names resolve without the cut-off.
    assert install_options(["Qiskit_Serverless==0.28.0", "qiskit-aer==0.17.2"]) == (
        ["--exclude-newer", "2025-12-04", "--exclude-newer-package", "qiskit-aer=2100-01-01"], [])
    # Published before Qiskit 1.3: the newest Qiskit 1.x, which reads qsflow's circuits.
    assert install_options(["qiskit-serverless==0.16.3"]) == (
        ["--exclude-newer", "2024-09-12", "--exclude-newer-package", "qiskit=2100-01-01"], ["qiskit>=1.3,<2"])
    assert install_options(["qiskit-serverless==0.16.3", "qiskit==1.2.4"])[1] == []
    assert install_options(["qiskit-serverless==9.0.0"]) == ([], [])
    assert install_options(["numpy"]) == ([], [])


def test_gateway_stops_serving_when_its_block_ends(tmp_path):
    """The job's endpoints answer while the job runs and refuse connections once the runner leaves the block;
    a client holding a keep-alive connection does not keep the server up."""
    import socket

    with job_gateway.serve(JOB, tmp_path / "results.json", lambda sub_status: True) as served:
        held = httpx.Client()
        assert _call(served, "PATCH", "sub_status", {"sub_status": "MAPPING"}).status_code == 200
        assert held.patch(f"{served.url}/api/v1/jobs/{JOB}/sub_status/", data={"sub_status": "MAPPING"},
                          headers={"Authorization": f"Bearer {served.token}"}).status_code == 200
        port = int(served.url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0)
    held.close()
