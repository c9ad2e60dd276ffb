"""distribute_task on a real local Ray head (2 CPUs) and, for jobs, the session's real Prefect server.

The module starts its own local head with known capacity (2 CPUs, 2 ``qsflow_widget``) and stops it at the
end. Tasks defined here travel to Ray by value, so the workers need not import this test module.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import PROGRAMS, local_ray_head
from deployments.processes import alive
from serverless_compat import (
    QiskitFunction,
    Target,
    UnsatisfiableTargetError,
    distribute_task,
    get,
    get_refs_by_status,
    put,
)

JOB_TIMEOUT = 300


@pytest.fixture(scope="module", autouse=True)
def ray_head(qsflow_home: Path) -> Any:
    """A fresh local head with known capacity, this process connected to it; all stopped at module end."""
    with local_ray_head(__name__) as head:
        yield head


# --- a local script: no job, no Prefect ---------------------------------------------------------------

def test_target_maps_onto_ray_options_and_tags() -> None:
    target = Target.from_dict({"cpu": 0.5, "gpu": 1, "mem": 2 * 1024**3, "resources": {"widget": 2},
                               "env_vars": {"A": 1}, "pip": ["rich"]})
    assert target.ray_options() == {
        "num_cpus": 0.5, "num_gpus": 1, "memory": 2 * 1024**3, "resources": {"widget": 2},
        "runtime_env": {"pip": ["rich"], "env_vars": {"A": "1"}},
    }
    assert target.tags() == ["distributed", "cpu:0.5", "gpu:1", f"mem:{2 * 1024**3}", "resource:widget=2",
                             "pip:rich"]
    assert Target().ray_options() == {"num_cpus": 1, "num_gpus": 0}
    with pytest.raises(ValueError, match="Unknown target keys \\['cpus'\\]"):
        Target.from_dict({"cpus": 2})


@distribute_task(target={"cpu": 2})
def _hold_both_cpus(seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def test_two_cpu_tasks_on_two_cpus_never_overlap() -> None:
    (start_a, end_a), (start_b, end_b) = get([_hold_both_cpus(1.0), _hold_both_cpus(1.0)])
    assert end_a <= start_b or end_b <= start_a, "two cpu=2 tasks ran at the same time on a 2-CPU cluster"


@distribute_task(target={"cpu": 0.5})
def _meet(barrier_dir: str, me: int, parties: int, timeout: float) -> tuple[float, float]:
    """Arrive at a file barrier and wait until all ``parties`` are there; return (arrived, all met)."""
    arrived = time.time()
    Path(barrier_dir, str(me)).touch()
    deadline = arrived + timeout
    while len(os.listdir(barrier_dir)) < parties:
        if time.time() > deadline:
            raise TimeoutError(f"only {len(os.listdir(barrier_dir))} of {parties} tasks ran at once")
        time.sleep(0.02)
    return arrived, time.time()


def test_four_half_cpu_tasks_run_at_the_same_time(tmp_path: Path) -> None:
    # Each task waits until all four have started, which only works if Ray runs them together.
    spans = get([_meet(str(tmp_path), i, 4, 120.0) for i in range(4)])
    assert max(arrived for arrived, _ in spans) <= min(met for _, met in spans)


@distribute_task(target={"cpu": 0.5, "mem": 64 * 1024 * 1024, "resources": {"qsflow_widget": 1}})
def _assigned() -> dict[str, float]:
    import ray

    return ray.get_runtime_context().get_assigned_resources()


def test_memory_and_custom_resources_reach_ray() -> None:
    assigned = get(_assigned())
    assert assigned == {"CPU": 0.5, "memory": 64 * 1024 * 1024, "qsflow_widget": 1.0}


class _Unlucky(LookupError):
    pass


@distribute_task(target={"cpu": 0.5})
def _fails(x: int) -> int:
    if x == 13:
        raise _Unlucky(f"{x} is unlucky")
    return x


def test_exceptions_propagate_with_original_type_and_message() -> None:
    with pytest.raises(_Unlucky, match="^13 is unlucky$"):
        get(_fails(13))
    with pytest.raises(_Unlucky, match="13 is unlucky"):
        get([_fails(1), _fails(13)])
    assert get([_fails(1), _fails(2)]) == [1, 2]


@pytest.mark.parametrize("target, named", [({"cpu": 64}, "CPU=64"), ({"gpu": 1}, "GPU=1")])
def test_unsatisfiable_target_fails_fast_naming_request_and_capacity(target: dict, named: str) -> None:
    @distribute_task(target=target)
    def never() -> int:
        return 1

    started = time.monotonic()
    with pytest.raises(UnsatisfiableTargetError) as raised:
        never()
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert named in message and "CPU=2" in message and "QSFLOW_RAY_ADDRESS" in message


@distribute_task(target={"cpu": 0.5})
def _total(values: list[int], offset: int) -> int:
    return sum(values) + offset


@distribute_task(target={"cpu": 0.5})
def _nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_put_refs_are_task_arguments_and_refs_split_by_status() -> None:
    values = put(list(range(10)))
    first = _total(values, 0)
    assert get(_total(values, get(first))) == 90
    slow, fast = _nap(5.0), _total(values, 1)
    get(fast)
    finished, pending = get_refs_by_status([slow, fast])
    assert finished == [fast] and pending == [slow]
    get(slow)
    assert get_refs_by_status([slow, fast]) == ([slow, fast], [])


# --- inside jobs: the program is a child process of the runner flow ---------------------------------

def _task_runs(prefect: Any, job_id: str, expected: int, timeout: float = 60) -> list:
    """The job's task runs once ``expected`` of them are final (they arrive through Prefect's events)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    while True:
        runs = prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[job_id])))
        if len([r for r in runs if r.state_type and r.state_type.value in {"COMPLETED", "FAILED", "CRASHED"}]) >= expected:
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(runs)} task runs recorded, wanted {expected} final: {runs}")
        time.sleep(0.5)


def test_seed_parallel_transpile_equals_serial_transpile(client, prefect) -> None:
    from qiskit import QuantumCircuit
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_ibm_runtime.fake_provider import FakeSherbrooke

    circuits = []
    for size in (3, 4, 5, 6):
        circuit = QuantumCircuit(size)
        circuit.h(0)
        for qubit in range(1, size):
            circuit.cx(0, qubit)
        circuit.measure_all()
        circuits.append(circuit)
    function = client.upload(QiskitFunction(
        title="distribute-transpile", entrypoint="transpile_remote.py",
        working_dir=str(PROGRAMS / "distribute_transpile"),
    ))
    job = function.run(circuit_list=circuits, optimization_level=2, backend="fake_sherbrooke", seed=11)
    result = job.result(cadence=1)

    serial = generate_preset_pass_manager(optimization_level=2, backend=FakeSherbrooke(), seed_transpiler=11)
    expected = [serial.run(circuit) for circuit in circuits]
    assert result["circuits"] == expected
    assert all(set(c.count_ops()) <= {"ecr", "rz", "sx", "x", "measure", "barrier"} for c in result["circuits"])

    # each call: one Prefect task run (prefect-ray's engine, the default), named by Prefect after the function
    runs = _task_runs(prefect, job.job_id, expected=4)
    assert len(runs) == 4
    assert all(r.state_type.value == "COMPLETED" and {"distributed", "cpu:1", "engine:prefect-ray"} <= set(r.tags)
               for r in runs)
    assert {r.name.rsplit("-", 1)[0] for r in runs} == {"transpile_remote"}


def test_plain_ray_put_and_errors_inside_a_job(client, prefect, ray_head) -> None:
    function = client.upload(QiskitFunction(
        title="distribute-ray", entrypoint="main.py", working_dir=str(PROGRAMS / "distribute_ray"),
    ))
    job = function.run(base=5, cubes=3)
    result = job.result(cadence=1)
    assert result == {"plain": 42, "squares": [25, 9], "cubes": [0, 1, 8], "error": ["Unlucky", "13 is unlucky"],
                      "gcs_port": ray_head["port"]}

    runs = _task_runs(prefect, job.job_id, expected=6)
    by_function: dict[str, list] = {}
    for run in runs:
        by_function.setdefault(run.name.rsplit("-", 1)[0], []).append(run)
    assert {name: len(calls) for name, calls in by_function.items()} == {"cube": 3, "square": 2, "unlucky": 1}
    assert all("resource:qsflow_widget=1" in r.tags for r in by_function["square"])
    (unlucky,) = by_function["unlucky"]
    assert unlucky.state_type.value == "FAILED"
    assert "13 is unlucky" in unlucky.state.message
    assert all(r.start_time is not None and r.end_time is not None for r in runs)


def test_stopping_a_job_kills_its_ray_tasks(client, tmp_path: Path) -> None:
    function = client.upload(QiskitFunction(
        title="distribute-stop", entrypoint="main.py", working_dir=str(PROGRAMS / "distribute_stop"),
    ))
    pid_file = tmp_path / "task.pid"
    job = function.run(pid_file=str(pid_file))
    deadline = time.monotonic() + JOB_TIMEOUT
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, f"the task never started; job is {job.status()}:\n{job.logs()}"
        time.sleep(0.2)
    pid = int(pid_file.read_text())
    assert alive(pid)
    job.stop()
    assert job.wait(timeout=120) == "CANCELED"
    deadline = time.monotonic() + 60
    while alive(pid):
        assert time.monotonic() < deadline, f"the job's Ray task (pid {pid}) still runs after the job stopped"
        time.sleep(0.2)
