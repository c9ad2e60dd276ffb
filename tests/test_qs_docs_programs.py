"""Qiskit Serverless's documented programs, as a migrating user runs them on qsflow.

One test per example in Qiskit Serverless's documentation (hello world, arguments and results,
dependencies, parallel workflow, data files, detailed statuses; programs in
tests/programs/docs_examples, written for qsflow). The client side is imported from
``qiskit_serverless`` after the one line a migrating user adds. Every job is submitted at once by
the module's fixture and the tests read the finished jobs, so the module costs about one job's time.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest

import serverless_compat

serverless_compat.install_as_qiskit_serverless()
from qiskit import QuantumCircuit  # noqa: E402
from qiskit_serverless import Job, QiskitFunction, QiskitServerlessException  # noqa: E402

from conftest import PROGRAMS, bell, make_tar  # noqa: E402

from flows.status import to_job_status  # noqa: E402

JOB_TIMEOUT = 600
WORKING_DIR = str(PROGRAMS / "docs_examples")
INPUT_FILE = "docs-example-input.tar"
OUTPUT_FILE = "docs-example-output.tar.gz"
# Prefect brings pendulum 3.3 into qsflow's own environment; the function asks for another release.
PENDULUM = "3.0.0"
STAGES = [Job.MAPPING, Job.OPTIMIZING_HARDWARE, Job.WAITING_QPU, Job.EXECUTING_QPU, Job.POST_PROCESSING]


def _function(title: str, entrypoint: str, **extra) -> QiskitFunction:
    return QiskitFunction(title=f"docs-{title}", entrypoint=entrypoint, working_dir=WORKING_DIR, **extra)


def _ghz(size: int) -> QuantumCircuit:
    circuit = QuantumCircuit(size)
    circuit.h(0)
    for qubit in range(1, size):
        circuit.cx(0, qubit)
    circuit.measure_all()
    return circuit


@pytest.fixture(scope="module")
def docs(client, tmp_path_factory):
    """Upload every example, submit all their jobs together, wait until each has ended."""
    data_dir = tmp_path_factory.mktemp("docs-data")
    functions = {
        "hello": client.upload(_function("hello-world", "hello_world.py")),
        "arguments": client.upload(_function("arguments", "with_arguments.py")),
        "dependencies": client.upload(_function("dependencies", "with_dependencies.py",
                                                dependencies=[f"pendulum=={PENDULUM}"])),
        "parallel": client.upload(_function("parallel-workflow", "parallel_workflow.py")),
        "data": client.upload(_function("data-files", "data_files.py")),
        "statuses": client.upload(_function("detailed-statuses", "detailed_statuses.py")),
    }
    if OUTPUT_FILE in client.files(functions["data"]):  # left by an earlier run against the same server
        client.file_delete(OUTPUT_FILE, functions["data"])
    client.file_upload(str(make_tar(data_dir / INPUT_FILE, b"hello from the client")), functions["data"])
    jobs = {
        "hello": client.run(functions["hello"]),
        "arguments": client.run(functions["arguments"],
                                arguments={"circuit": bell(), "backend_name": "fake_vigo"}),
        "bad_arguments": functions["arguments"].run(circuit=bell(), backend_name=""),
        "dependencies": functions["dependencies"].run(),
        "parallel": functions["parallel"].run(circuits=[_ghz(2), _ghz(3), _ghz(4)],
                                              backend_name="fake_vigo"),
        "data": functions["data"].run(read=INPUT_FILE, write=OUTPUT_FILE),
        "statuses": functions["statuses"].run(),
    }
    for job in jobs.values():
        job.wait(timeout=JOB_TIMEOUT)
    yield {"functions": functions, "jobs": jobs, "data_dir": data_dir}
    for name in (INPUT_FILE, OUTPUT_FILE):
        if name in client.files(functions["data"]):
            client.file_delete(name, functions["data"])


def _assert_done(job: Job) -> None:
    status = job.status()
    assert status == "DONE", f"{status}: {job.error_message()}\n{job.logs()[-3000:]}"


def _bell_like(counts: dict, shots: int = 1024) -> None:
    """Counts of a sampled Bell/GHZ state: all shots, nearly all in the all-zeros and all-ones outcomes."""
    width = len(next(iter(counts)))
    assert sum(counts.values()) == shots
    assert counts.get("0" * width, 0) + counts.get("1" * width, 0) > 0.8 * shots


def test_hello_world(client, docs):
    job = docs["jobs"]["hello"]
    assert isinstance(job, Job)
    _assert_done(job)
    assert job.in_terminal_state()
    counts = job.result()
    _bell_like(counts)
    logs = job.logs()
    assert logs.index("hello world: starting") < logs.index("hello world: done")
    # Retrieving past results: the job is listed for its function and found again by id.
    assert job.job_id in [j.job_id for j in client.jobs(function=docs["functions"]["hello"])]
    assert client.job(job.job_id).result() == counts


def test_arguments_and_results(docs):
    job = docs["jobs"]["arguments"]
    _assert_done(job)
    result = job.result()
    assert result["backend"] == "fake_vigo"
    _bell_like(result["quasi_dists"])
    # A Qiskit object saved by the program comes back as one: the circuit, transpiled for Vigo's 5 qubits.
    assert isinstance(result["isa_circuit"], QuantumCircuit)
    assert result["isa_circuit"].num_qubits == 5
    assert "arguments: circuit of 2 qubits, backend fake_vigo" in job.logs()


def test_invalid_arguments_end_the_job_in_error(docs):
    job = docs["jobs"]["bad_arguments"]
    assert job.status() == "ERROR"
    assert "backend_name must be a non-empty string" in job.error_message()
    with pytest.raises(QiskitServerlessException, match="backend_name must be a non-empty string"):
        job.result()


def test_dependencies(docs, qsflow_home):
    job = docs["jobs"]["dependencies"]
    _assert_done(job)
    result = job.result()
    assert (result["hours"], result["pendulum"]) == (3, PENDULUM)
    # Imported from the function's own environment, not from qsflow's (which has another release).
    assert result["module_file"].startswith(str(qsflow_home / "envs"))
    from importlib.metadata import version

    assert version("pendulum") != PENDULUM
    assert "hours between the two new years: 3" in job.logs()


def test_parallel_workflow(docs):
    job = docs["jobs"]["parallel"]
    _assert_done(job)
    result = job.result()
    assert len(result["results"]) == 3
    for size, counts in zip((2, 3, 4), result["results"]):
        assert {len(outcome) for outcome in counts} == {size}
        _bell_like(counts)
    assert [c.num_qubits for c in result["isa_circuits"]] == [5, 5, 5]
    logs = job.logs()
    assert "launched 3 tasks" in logs
    assert "collected 3 circuits" in logs


def test_data_files(client, docs):
    job = docs["jobs"]["data"]
    function = docs["functions"]["data"]
    _assert_done(job)
    assert job.result() == {"read": "hello from the client", "written": OUTPUT_FILE}
    assert {INPUT_FILE, OUTPUT_FILE} <= set(client.files(function))
    downloaded = client.file_download(OUTPUT_FILE, function, download_location=str(docs["data_dir"] / "down"))
    with tarfile.open(downloaded) as archive:
        assert archive.extractfile("answer.txt").read() == b"hello from the client (seen by the program)"
    # Named as Qiskit Serverless names downloads when no target_name is given.
    assert re.fullmatch(rf"downloaded_[0-9a-f]{{8}}_{re.escape(OUTPUT_FILE)}", Path(downloaded).name)


def test_detailed_statuses(docs, prefect):
    job = docs["jobs"]["statuses"]
    _assert_done(job)
    assert job.result() == {"stages": STAGES, "accepted": [True] * len(STAGES)}
    statuses = [to_job_status(s.type, s.name) for s in prefect.read_flow_run_states(job.job_id)]
    detailed = [s for s in statuses if s.startswith("RUNNING: ")]
    assert detailed == ["RUNNING: MAPPING", "RUNNING: OPTIMIZING_FOR_HARDWARE", "RUNNING: WAITING_FOR_QPU",
                        "RUNNING: EXECUTING_QPU", "RUNNING: POST_PROCESSING"]
    assert statuses[-1] == "DONE"
    logs = job.logs()
    assert [logs.index(f"stage {stage}") for stage in STAGES] == sorted(logs.index(f"stage {stage}")
                                                                      for stage in STAGES)
