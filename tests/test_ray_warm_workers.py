"""The local head's pool of warm Ray workers (deployments.ray_warm_workers), on a real local head: job-less
workers with Prefect's task engine loaded, taken by the next driver's tasks, refilled after it, and gone with the
head. Each driver here is a subprocess, as a job's program is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployments import ray_cluster, ray_warm_workers

POOL = 3
IDLE_LIMIT_MS = 2000
ROOT = Path(__file__).resolve().parent.parent

DRIVER = """
import json, os, sys, time
import ray
ray.init(address=os.environ["RAY_ADDRESS"], logging_level="ERROR")

@ray.remote(num_cpus=0.5)
def where():
    loaded = [name for name in ("tasks.worker_preload", "prefect.task_engine", "prefect.main") if name in sys.modules]
    time.sleep(1.5)  # the three run at once, each on its own worker
    return os.getpid(), loaded, os.getpriority(os.PRIO_PROCESS, 0)

print(json.dumps(ray.get([where.remote() for _ in range(3)])))
"""

FIRST_DRIVER = """
import json, os, time
import ray
ray.init(address=os.environ["RAY_ADDRESS"], logging_level="ERROR")
time.sleep(1.0)
print(json.dumps(True))
"""

# A fan-out with a backlog: two one-CPU slots on the two-CPU head, 40 tasks queued behind them.
BACKLOG_DRIVER = """
import json, os, time
import ray
from deployments.ray_cluster import session_pids
ray.init(address=os.environ["RAY_ADDRESS"], logging_level="ERROR")

@ray.remote(num_cpus=1)
def where():
    time.sleep(0.05)
    return os.getpid()

ran = sorted(set(ray.get([where.remote() for _ in range(40)])))
time.sleep(1.0)  # a worker started for the backlog would have shown up by now
print(json.dumps({"ran": ran, "session": session_pids(os.environ["HEAD_TEMP_DIR"], int(os.environ["HEAD_PID"]))}))
"""


@pytest.fixture(scope="module")
def head():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QSFLOW_RAY_NUM_CPUS", "2")
        patch.setenv(ray_warm_workers.WARM_WORKERS_ENV, str(POOL))
        # idle workers that are not kept alive are stopped after 2 s here, not a minute
        patch.setenv("RAY_idle_worker_killing_time_threshold_ms", str(IDLE_LIMIT_MS))
        ray_cluster.stop()  # a head started earlier in the session may predate these settings
        try:
            ray_cluster.ensure_local_head()
            yield ray_cluster.local_head_status()
        finally:
            ray_cluster.stop()


def _driver_output(address: str, source: str, **extra_env: str) -> object:
    env = {**os.environ, "RAY_ADDRESS": address, **ray_cluster.driver_env(address), **extra_env}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", source], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_driver(address: str) -> list[tuple[int, list[str], int]]:
    return [tuple(row) for row in _driver_output(address, DRIVER)]


def _wait_for_pool(port: int, count: int, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        pids = ray_warm_workers.jobless_worker_pids(port)
        if len(pids) >= count or time.monotonic() > deadline:
            return pids
        time.sleep(0.2)


def test_the_pool_is_only_workers_it_asked_for_and_they_outlive_the_idle_limit(head):
    """The raylet starts no job-less workers of its own, at its start or at the first driver's: it would stop them
    once idle past its limit, the pool would count them meanwhile and start them again (ray_warm_workers.head_env).
    First in this module, so its driver is the head's first."""
    port = head["node_manager_port"]
    ray_warm_workers.fill()
    pool = sorted(ray_warm_workers.jobless_worker_pids(port))
    assert len(pool) == POOL
    _driver_output(head["address"], FIRST_DRIVER)  # connects and runs nothing
    deadline = time.monotonic() + 2 * IDLE_LIMIT_MS / 1000 + 1.0
    while time.monotonic() < deadline:  # past the idle limit of any worker the driver's start made
        assert sorted(ray_warm_workers.jobless_worker_pids(port)) == pool
        time.sleep(0.2)
    assert ray_warm_workers.fill() == 0


def test_the_next_driver_runs_on_the_pool_with_prefect_loaded_and_the_pool_is_refilled_after_it(head):
    port = head["node_manager_port"]
    ray_warm_workers.fill()
    pool = ray_warm_workers.jobless_worker_pids(port)
    assert len(pool) == POOL  # the raylet's own one per CPU, topped up to the target

    ran = _run_driver(head["address"])
    assert {pid for pid, _, _ in ran} <= set(pool), (ran, pool)
    assert all(loaded == ["tasks.worker_preload", "prefect.task_engine", "prefect.main"] for _, loaded, _ in ran), ran
    # at the program's and the Prefect server's priority, not Ray's default nice 15 for workers
    assert [nice for _, _, nice in ran] == [0, 0, 0], ran

    # The driver's workers ended with it; a refill (what the warm worker does after each run) brings new ones.
    refiller = ray_warm_workers.Refiller(period=3600).start()
    try:
        refiller.wake()
        refilled = _wait_for_pool(port, POOL)
    finally:
        refiller.stop()
    assert len(refilled) == POOL and not set(refilled) & {pid for pid, _, _ in ran}, (refilled, ran)
    assert ray_warm_workers.fill() == 0  # full: nothing more is started


def test_a_backlog_on_the_pool_starts_no_worker_beside_it(head):
    """Ray 2.60 started workers for a lease request's backlog until idle plus starting ones reached its soft limit,
    not counting the busy pool workers: with the limit at the pool plus one per CPU, this fan-out started four
    workers that never ran a task (ray_warm_workers.head_env)."""
    _run_driver(head["address"])  # the head's first driver is past (Ray treats that one apart)
    ray_warm_workers.fill()
    port = head["node_manager_port"]
    pool = set(ray_warm_workers.jobless_worker_pids(port))
    before = set(ray_cluster.session_pids(head["temp_dir"], head["pid"]))
    assert len(pool) == POOL and pool <= before

    seen = _driver_output(head["address"], BACKLOG_DRIVER, HEAD_TEMP_DIR=head["temp_dir"], HEAD_PID=str(head["pid"]))
    assert set(seen["ran"]) <= pool, seen
    assert set(seen["session"]) - before == set(), seen  # no worker started beside the pool during the job


def test_the_refiller_starts_no_worker_while_a_job_runs(head):
    port = head["node_manager_port"]
    ray_warm_workers.fill()
    _run_driver(head["address"])  # takes three of the pool; they end with it
    short = len(ray_warm_workers.jobless_worker_pids(port))
    assert short < POOL

    consulted, running = [], [True]

    def busy() -> bool:
        consulted.append(running[0])
        return running[0]

    refiller = ray_warm_workers.Refiller(period=3600, busy=busy).start()
    try:
        for _ in range(2):  # the second wake is seen only once the first one was handled (and not filled)
            refiller.wake()
            deadline = time.monotonic() + 30
            calls = len(consulted)
            while len(consulted) == calls and time.monotonic() < deadline:
                time.sleep(0.05)
        assert consulted[:2] == [True, True], consulted
        assert len(ray_warm_workers.jobless_worker_pids(port)) == short  # nothing started while busy
        running[0] = False  # the last run ended: its wake refills
        refiller.wake()
        assert len(_wait_for_pool(port, POOL)) == POOL
    finally:
        refiller.stop()


def test_stopping_the_head_leaves_no_worker_even_one_still_loading(head):
    port = head["node_manager_port"]
    ray_warm_workers._prestart(port, 2)  # these join, then import Prefect while the head stops
    _wait_for_pool(port, POOL + 2)
    ray_cluster.stop()
    deadline = time.monotonic() + 2.0  # SIGKILLed processes take a moment to be torn down
    while (left := ray_cluster.session_pids(head["temp_dir"], head["pid"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], left


@pytest.mark.parametrize("value, message", [("four", "not a whole number"), ("-1", "negative")])
def test_a_wrong_pool_size_names_the_fix(monkeypatch, value, message):
    monkeypatch.setenv(ray_warm_workers.WARM_WORKERS_ENV, value)
    with pytest.raises(ValueError, match=message) as error:
        ray_warm_workers.target(2)
    assert "0 turns the pool off" in str(error.value) or "set 0" in str(error.value)


def test_the_pool_is_two_per_cpu_by_default_and_zero_turns_it_and_the_preload_off(monkeypatch):
    monkeypatch.setenv(ray_warm_workers.WARM_WORKERS_ENV, "0")
    assert ray_warm_workers.target(8) == 0 and ray_warm_workers.head_env(8) == {}
    monkeypatch.delenv(ray_warm_workers.WARM_WORKERS_ENV)
    assert ray_warm_workers.target(2) == 4 and ray_warm_workers.target(16) == 8
    assert ray_warm_workers.head_env(2) == {"RAY_preload_python_modules": "tasks.worker_preload",
                                            "RAY_num_workers_soft_limit": "0",
                                            "RAY_idle_worker_killing_time_threshold_ms": "60000",
                                            "RAY_enable_worker_prestart": "0", "RAY_prestart_worker_first_driver": "0"}
