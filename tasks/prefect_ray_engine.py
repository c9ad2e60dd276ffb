"""The ``prefect-ray`` engine of ``distribute_task``: each call is a Prefect task run by prefect-ray's ``RayTaskRunner``.

This is the design card's engine. Inside a job (the program's process, ``QSFLOW_JOB_ID`` set by the runner) the
first call builds, once per process:

* the job's flow run, read from the Prefect API by its id (its parameters dropped: the job's arguments need not
  travel with every task);
* a :class:`tasks.job_task_runner.JobRayTaskRunner` (prefect-ray's ``RayTaskRunner``, shipping the context once per
  job) on the shared Ray cluster (this process is connected first by :mod:`tasks.ray_connection`, so the runner
  reuses that connection and never starts or stops Ray);
* a ``FlowRunContext`` holding both, so that submitted tasks become task runs of the job's flow run.

Each decorated function becomes one Prefect ``task`` (named after the function, tagged with its resources like the
direct engine's task runs plus ``engine:prefect-ray``, no result persistence, no caching). Each call submits it
inside ``prefect_ray.context.remote_options(...)`` carrying the target's Ray options (``num_cpus``, ``num_gpus``,
``memory``, ``resources``, ``runtime_env``). The runner returns prefect-ray's ``PrefectRayFuture``; the call
returns its ``wrapped_future``, a Ray ``ObjectRef`` of the task's value (the runner runs with
``return_values=True``), so the program can use it as Qiskit Serverless programs use their refs: ``get``,
``ray.get``, ``ray.wait``, ``ray.cancel``, or as an argument of another call (the Prefect UI then links the two
task runs).

Prefect's task engine runs inside the Ray worker and records the task run itself (through Prefect's events), so
the runner's event-file recorder (:mod:`tasks.task_runs`) does not see these calls and records nothing twice.

Outside a job (no ``QSFLOW_JOB_ID``) there is no flow run to attach to and ``distribute_task`` uses the direct
engine (no Prefect server needed, nothing recorded), as documented in docs/distribute.md.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional
from uuid import UUID

from prefect import Flow, Task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.results import ResultStore
from prefect.utilities.callables import get_call_parameters
from prefect_ray.context import remote_options
from prefect_ray.task_runners import PrefectRayFuture

from deployments.settings import unwritten_result_storage
from tasks import ray_connection
from tasks.job_task_runner import JobRayTaskRunner

if TYPE_CHECKING:
    from tasks.distributed import DistributedTask

JOB_ID_ENV = ray_connection.JOB_ID_ENV
ENGINE_TAG = "engine:prefect-ray"

# What the task runs' context keeps of the job's flow run. Its parameters need not travel with every task. Its
# deployment, work queue, work pool and tags would be attached by Prefect's events worker to every state event of
# every task run as related resources (12 per event in a job, 6 in a plain flow); the Prefect server validates,
# stores and compiles into its insert each of them: ~12% of its CPU per task run measured here. The task runs
# still name their flow run and flow (the UI lists them under the job's run); the flow run's own events keep all.
TASK_CONTEXT_FLOW_RUN = {"parameters": {}, "deployment_id": None, "work_queue_id": None, "work_queue_name": None,
                         "work_pool_name": None, "work_pool_id": None, "tags": []}

_lock = threading.Lock()
_context: Optional[FlowRunContext] = None
_context_job: Optional[str] = None


def _job_flow() -> None:
    """Stands for the job's flow in the task runs' context; never called (the runner flow runs the job)."""


def job_context() -> FlowRunContext:
    """The job's flow-run context with a started ``RayTaskRunner`` (built on first use, then reused)."""
    global _context, _context_job
    job_id = os.environ[JOB_ID_ENV]
    if _context is not None and _context_job == job_id:
        return _context
    with _lock:
        if _context is None or _context_job != job_id:
            _context = _build_context(job_id)
            _context_job = job_id
    return _context


def _build_context(job_id: str) -> FlowRunContext:
    from prefect.client.orchestration import get_client

    ray_connection.connect()  # our connection (job metadata, loopback); the task runner then reuses it
    client = get_client(sync_client=True)
    client.__enter__()  # kept open for the life of the program, like a flow run's client
    try:
        flow_run = client.read_flow_run(UUID(job_id))
    except Exception as error:
        raise RuntimeError(
            f"distribute_task(engine='prefect-ray') could not read the job's flow run {job_id} from the Prefect "
            f"API at {os.environ.get('PREFECT_API_URL') or 'the default'}: {error}"
        ) from error
    flow_run = flow_run.model_copy(update=TASK_CONTEXT_FLOW_RUN)
    runner = JobRayTaskRunner(address=ray_connection.cluster_address(), return_values=True)
    runner.__enter__()  # Ray is initialized already: the runner neither starts nor later stops it
    flow = Flow(fn=_job_flow, name="qsflow-job", task_runner=runner, persist_result=False)
    return FlowRunContext(
        flow=flow, flow_run=flow_run, client=client, task_runner=runner, parameters={},
        result_store=ResultStore(), persist_result=False,
    )


CACHE_DIR = "task-cache"
CACHE_BLOCK = "qsflow-task-cache"


def cache_storage() -> Any:
    """Where cached task results live, readable by every Ray worker of every job: ``task-cache/`` beside the
    qsflow store when the store is a local directory; on a cluster (an S3 store) a filesystem block saved on the
    server as ``qsflow-task-cache`` (Prefect wants result storage saved server-side, and the store's credentials
    must not be copied into a plain block by qsflow)."""
    from prefect.filesystems import RemoteFileSystem

    from blocks.storage import load_store

    filesystem = load_store().filesystem
    if not isinstance(filesystem, RemoteFileSystem):
        return Path(str(filesystem.basepath)) / CACHE_DIR
    from prefect.blocks.core import Block

    try:
        return Block.load(f"remote-file-system/{CACHE_BLOCK}")
    except ValueError:
        raise RuntimeError(
            f"distribute_task(cache=True) on a cluster store needs a Prefect filesystem block "
            f"'remote-file-system/{CACHE_BLOCK}' for the cached results, e.g. "
            f"RemoteFileSystem(basepath='{filesystem.basepath.rstrip('/')}/{CACHE_DIR}', settings={{...}})"
            f".save('{CACHE_BLOCK}'); or drop cache=True."
        ) from None


def prefect_task(distributed: "DistributedTask[Any]") -> Task:
    """The Prefect task standing for ``distributed``'s function (one per decorated function).

    No caching and no result persistence, unless the function was decorated with ``cache=True``: then Prefect's
    ``INPUTS + TASK_SOURCE`` cache policy, results persisted in the store's ``task-cache/`` (see docs/distribute.md).
    """
    fn = distributed.fn
    options: dict[str, Any] = {"persist_result": False, "cache_policy": NO_CACHE,
                               "result_storage": unwritten_result_storage()}
    if distributed.cache:
        from prefect.cache_policies import INPUTS, TASK_SOURCE

        options = {"persist_result": True, "cache_policy": INPUTS + TASK_SOURCE, "result_storage": cache_storage()}
    return Task(
        fn=fn,
        name=getattr(fn, "__name__", "distributed"),
        tags=[*distributed.target.tags(), ENGINE_TAG],
        retries=distributed.retries or 0,
        **options,
    )


def submit(distributed: "DistributedTask[Any]", task: Task, args: tuple, kwargs: dict) -> Any:
    """Submit one call as a task run of the job's flow run with the target's Ray options; return the Ray
    ``ObjectRef`` of its value (the ``wrapped_future`` of the runner's ``PrefectRayFuture``)."""
    context = job_context()
    # What Task.submit does, without its own keywords (return_state, wait_for) shadowing the function's.
    parameters = get_call_parameters(task.fn, args, kwargs)
    # Prefect's task engine retries exceptions (retries=); Ray only re-runs a call whose worker was lost.
    with context.model_copy(), remote_options(**distributed.ray_options(retry_exceptions=False)):
        future: PrefectRayFuture = context.task_runner.submit(task, parameters)
    return future.wrapped_future
