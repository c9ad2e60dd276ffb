"""Qiskit's threads inside distributed tasks (tasks.qiskit_threads), on a real 2-CPU local Ray head: a task with
fewer than two CPUs runs Qiskit single-threaded, one with two keeps Qiskit's default, a worker environment that
chooses for itself is left alone, and the worker's environment is put back after each call."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from conftest import local_ray_head
from serverless_compat import distribute_task, get
from tasks import qiskit_threads


@pytest.fixture(scope="module", autouse=True)
def ray_head(qsflow_home: Path) -> Any:
    """A fresh local head with known capacity, this process connected to it; all stopped at module end."""
    with local_ray_head(__name__) as head:
        yield head


@pytest.fixture(autouse=True)
def no_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QSFLOW_JOB_ID", raising=False)  # the direct engine: plain Ray tasks, nothing recorded


def _seen() -> tuple[Optional[str], bool]:
    """What a task sees: the switch, and whether Qiskit would start its own process pool."""
    from qiskit.utils import should_run_in_parallel

    return os.environ.get(qiskit_threads.SINGLE_THREAD_VARIABLE), should_run_in_parallel(4)


@pytest.mark.parametrize("cpu", [0.5, 1])
def test_a_task_with_fewer_than_two_cpus_runs_qiskit_on_one_thread(cpu: float) -> None:
    seen = get(distribute_task(target={"cpu": cpu})(_seen)())
    assert seen == ("TRUE", False)


def test_a_task_with_two_cpus_keeps_qiskits_default() -> None:
    variable, _ = get(distribute_task(target={"cpu": 2})(_seen)())
    assert variable is None


@pytest.mark.parametrize("env_vars", [{"QISKIT_IN_PARALLEL": "FALSE"}, {"RAYON_NUM_THREADS": "2"},
                                      {"QISKIT_FORCE_THREADS": "TRUE"}])
def test_a_worker_environment_that_chooses_is_left_alone(env_vars: dict[str, str]) -> None:
    variable, _ = get(distribute_task(target={"cpu": 1, "env_vars": env_vars})(_seen)())
    assert variable == env_vars.get("QISKIT_IN_PARALLEL")


def test_the_worker_environment_is_put_back_after_the_call() -> None:
    import ray

    @ray.remote(num_cpus=1)
    def around() -> tuple[Optional[str], Optional[str], Optional[str]]:
        before = os.environ.get(qiskit_threads.SINGLE_THREAD_VARIABLE)
        during = qiskit_threads.sized_call(lambda: os.environ.get(qiskit_threads.SINGLE_THREAD_VARIABLE))()
        return before, during, os.environ.get(qiskit_threads.SINGLE_THREAD_VARIABLE)

    assert ray.get(around.remote()) == (None, "TRUE", None)


def _transpile_times() -> tuple[float, float]:
    """Wall and CPU time of this process transpiling three circuits at level 2 (Sabre uses Rust threads)."""
    from qiskit.circuit.random import random_circuit
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_ibm_runtime.fake_provider import FakeSherbrooke

    manager = generate_preset_pass_manager(optimization_level=2, backend=FakeSherbrooke(), seed_transpiler=1)
    circuits = [random_circuit(20, 60, max_operands=2, seed=seed) for seed in range(3)]
    manager.run(circuits[0])
    wall, cpu = time.perf_counter(), time.process_time()
    for circuit in circuits:
        manager.run(circuit)
    return time.perf_counter() - wall, time.process_time() - cpu


def test_qiskits_rust_passes_stay_on_one_core_in_a_one_cpu_task() -> None:
    wall, cpu = get(distribute_task(target={"cpu": 1})(_transpile_times)())
    # one thread cannot use more CPU than wall time; Qiskit's default uses both cores here (~1.6x)
    assert cpu <= wall * 1.1, (wall, cpu)
