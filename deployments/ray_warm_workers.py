"""Warm Ray workers the local head keeps for the next job: started before it, with Prefect's task engine loaded.

Ray's workers belong to one driver, and each job's program is a new driver, so every job used to start its own
workers, each importing Ray and then Prefect's task engine at its first task (~1.5 s of CPU each here): a job's
first batch of distributed tasks waited for that. Ray also starts workers that belong to no job yet: the raylet
starts one per CPU when it starts, and more when asked (its ``PrestartWorkers`` call, with no job id); a job's
task takes such an idle worker before starting one of its own. qsflow uses both:

* the local head's workers import ``tasks.worker_preload`` (Prefect's task engine, qsflow's task runner and what
  a job's first task would load besides) as they start (Ray's ``preload_python_modules`` setting), so a worker is
  ready for a Prefect task run as soon as it is up;
* the warm worker (``deployments.warm_worker``) keeps ``QSFLOW_RAY_WARM_WORKERS`` of those job-less workers idle
  on the local head (default: two per CPU, at most 8, so a fan-out of ``cpu=0.5`` tasks finds one per slot). A
  job's workers end with the job, so it refills the pool after each run's process exits, and checks it every
  ``CHECK_S`` seconds (every second until the head, which may start after the worker, is up); never while one of
  its runs is active, so the new workers' start-up does not take CPU from a job.

The raylet starts at most one worker per CPU at a time and silently drops a prestart beyond that, so the pool is
filled a CPU's worth at a time, each step waiting for the workers asked for to join.

``0`` turns both off: workers then start when a job first needs them and import Prefect at its first task.

A stopped job's busy workers are ended by Ray with SIGTERM, which Prefect's task engine in them records as Crashed;
the job's final hook turns those runs into Cancelled (``tasks.task_runs.close_open_task_runs``). Before it did, a
run whose Crashed was recorded ahead of the hook stayed Crashed; CI saw that with the pool on, which was off by
default until then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Callable

from deployments.processes import home_lock

WARM_WORKERS_ENV = "QSFLOW_RAY_WARM_WORKERS"
PRELOAD_MODULES = "tasks.worker_preload"  # what a Ray worker runs a distributed task with, loaded
KEEP_ALIVE_S = 24 * 3600  # prestarted workers are kept this long even above the raylet's idle-worker limit
JOB_WORKER_IDLE_S = 60  # with the pool on, a job's idle workers are stopped after this long
JOIN_TIMEOUT_S = 30.0  # a step waits this long at most for its workers to join
CHECK_S = 30.0
_logger = logging.getLogger("qsflow.ray")


def target(num_cpus: int) -> int:
    """How many idle, job-less workers a head with ``num_cpus`` CPUs keeps (``QSFLOW_RAY_WARM_WORKERS``)."""
    value = os.environ.get(WARM_WORKERS_ENV)
    if value is None or value.strip() == "":
        return min(2 * num_cpus, 8)
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"{WARM_WORKERS_ENV}={value!r} is not a whole number; set it like 4 (0 turns the pool off).")
    if count < 0:
        raise ValueError(f"{WARM_WORKERS_ENV}={value!r} is negative; set 0 to turn the pool off.")
    return count


def head_env(num_cpus: int) -> dict[str, str]:
    """Environment the local head starts with when it keeps a pool: its workers import the task runner as they
    start, and the raylet starts a job's workers only for leases it grants and stops them after a minute idle.

    Ray 2.60 uses its idle-worker soft limit (``num_workers_soft_limit``, one per CPU by default) twice: the raylet
    stops idle workers above it, and on every lease request it starts workers until the idle and starting ones reach
    it or the request's backlog. The busy pool workers count for neither, so a fan-out on the pool had the raylet
    start up to the limit again beside them (~1.5 s of CPU each, on the job's time), never to run a task: 6 a job
    with a 200-task backlog here, a third of the machine's CPU in a 2000-task job. With the limit at 0 the raylet
    starts a worker only when it grants a lease and no idle worker fits. The limit 0 also lets the raylet stop every
    idle worker of a job once it idled ``JOB_WORKER_IDLE_S`` (the pool's job-less workers are kept alive anyway): a
    job's workers stay through a pause of up to a minute between two fan-outs, and a job that moves through many
    task environments does not keep every environment's workers until it ends.

    Nor does the raylet start job-less workers of its own, one per CPU, when it starts (``enable_worker_prestart``)
    or when the first driver connects (``prestart_worker_first_driver``): those are not kept alive, so the pool
    counted them, the raylet stopped them a minute later, and the pool was filled again (~1.5 s of CPU each, seen
    ~75 s after every start of the embedded default). The pool's workers are then all the ones its fill asked for.
    """
    if target(num_cpus) == 0:
        return {}
    return {"RAY_preload_python_modules": PRELOAD_MODULES, "RAY_num_workers_soft_limit": "0",
            "RAY_idle_worker_killing_time_threshold_ms": str(JOB_WORKER_IDLE_S * 1000),
            "RAY_enable_worker_prestart": "0", "RAY_prestart_worker_first_driver": "0"}


def fill() -> int:
    """Bring the local head's pool of idle job-less workers up to :func:`target`; return how many were started.

    A no-op when no local head of this home runs, when it predates the pool (no raylet port recorded), or when the
    pool is full. Blocks while workers start.
    """
    from deployments import ray_cluster

    state = ray_cluster.local_head_status()
    port, num_cpus = state.get("node_manager_port"), state.get("num_cpus")
    if not (state.get("running") and port and num_cpus):
        return 0
    wanted, started = target(int(num_cpus)), 0
    with home_lock("ray-warm.lock"):  # one filler at a time per home
        for _ in range(wanted + 1):
            idle = idle_jobless_workers(port)
            missing = wanted - idle
            if missing <= 0:
                break
            batch = min(missing, int(num_cpus))
            _prestart(port, batch)
            deadline = time.monotonic() + JOIN_TIMEOUT_S
            while time.monotonic() < deadline:
                time.sleep(0.25)
                now = idle_jobless_workers(port)
                if now >= idle + batch or now < idle:  # joined, or a job took some meanwhile: look again
                    break
            started += batch
    return started


class Refiller:
    """A thread that keeps the pool full: after each :meth:`wake` and every ``CHECK_S`` seconds, but never while
    ``busy()`` says a job runs. Starting workers costs ~1.5 s of CPU each (Ray's import, then the preload): a
    periodic check that fell during a job started four beside it (seen in a probe: its first rounds of 200 tasks
    ran 2-3x slower). The run that ends last wakes it."""

    def __init__(self, period: float = CHECK_S, busy: Callable[[], bool] = lambda: False) -> None:
        self.period = period
        self.busy = busy
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="qsflow-ray-warm-workers", daemon=True)

    def start(self) -> "Refiller":
        self._thread.start()
        return self

    def wake(self) -> None:
        """A job's run ended (its Ray workers with it): refill now."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _loop(self) -> None:
        from deployments import ray_cluster

        begun, head_up = time.monotonic(), False
        while not self._stop.is_set():
            # The head starts with the server, in the background, maybe after this worker: until it is up (or its
            # start timeout passed), look every second, so the pool is full by the first job that needs it.
            soon = not head_up and time.monotonic() - begun < ray_cluster.START_TIMEOUT
            self._wake.wait(1.0 if soon else self.period)
            self._wake.clear()
            if self._stop.is_set():
                return
            if self.busy():
                continue
            try:
                head_up = head_up or bool(ray_cluster.local_head_status().get("running"))
                fill()
            except Exception as exc:  # noqa: BLE001 - a missing warm worker costs a slower first batch only
                _logger.debug("Could not refill the warm Ray workers: %s", exc)


def _stub(port: int):  # noqa: ANN202 - Ray's generated gRPC stub
    import grpc
    from ray.core.generated import node_manager_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return channel, node_manager_pb2_grpc.NodeManagerServiceStub(channel)


def idle_jobless_workers(port: int) -> int:
    """How many Python task workers of the raylet at ``127.0.0.1:port`` belong to no job yet (idle by definition)."""
    return len(jobless_worker_pids(port))


def jobless_worker_pids(port: int) -> list[int]:
    """The pids of the Python task workers of the raylet at ``127.0.0.1:port`` that belong to no job yet."""
    from ray.core.generated import common_pb2, node_manager_pb2

    channel, stub = _stub(port)
    with contextlib.closing(channel):
        reply = stub.GetNodeStats(node_manager_pb2.GetNodeStatsRequest(include_memory_info=False), timeout=5)
    nil_job = b"\xff" * 4
    return [worker.pid for worker in reply.core_workers_stats
            if worker.worker_type == common_pb2.WorkerType.WORKER and worker.job_id == nil_job
            and worker.language == common_pb2.Language.PYTHON]


def _prestart(port: int, count: int) -> None:
    """Have the raylet start ``count`` job-less Python workers, kept idle for ``KEEP_ALIVE_S``."""
    from ray.core.generated import common_pb2, node_manager_pb2

    channel, stub = _stub(port)
    with contextlib.closing(channel):
        stub.PrestartWorkers(node_manager_pb2.PrestartWorkersRequest(
            language=common_pb2.Language.PYTHON, num_workers=count, keep_alive_duration_secs=KEEP_ALIVE_S), timeout=5)
