"""What each Ray worker of the local head loads as it starts, before any job gives it a task.

Named in the head's ``RAY_preload_python_modules`` (``deployments.ray_warm_workers``): Ray imports it in every new
worker right after the worker joins the raylet. A job's first distributed task on a worker used to pay all of this
(py-spy over a fresh job's four workers, ~0.6 s of CPU each):

* Prefect's task engine and qsflow's task runner, which the worker runs each task with;
* ``prefect.main`` (through ``tasks.prefect_ray_engine``, which the job's pickled context names): Prefect's
  logging setup and its model rebuilds, ~0.3 s;
* what Ray's serialization context imports when a job's first object is read (pydantic's v1 field types,
  starlette's data structures, Arrow serializers), ~0.17 s;
* Prefect's deferred pydantic models, one shared TLS context for its API clients and anyio's asyncio backend.

A worker that idles with all of it loaded before a job starts (the warm pool) pays only the job's own part at its
first task: entering the job's Prefect context once (its shipped settings, one API client, the flow run). Nothing
here reads a job's settings: each task still runs in its job's own Prefect context.
"""

import contextlib

import tasks.job_task_runner  # noqa: F401
import tasks.prefect_ray_engine  # noqa: F401

from deployments.connection import load_async_backend, share_tls_contexts
from deployments.prefect_models import build_deferred_models


def _load_ray_serialization_addons() -> None:
    """Import what ``ray.util.serialization_addons.apply`` imports for each job's serialization context."""
    with contextlib.suppress(Exception):
        from ray._common.pydantic_compat import _iter_model_field_types

        _iter_model_field_types()
    with contextlib.suppress(ImportError):
        import starlette.datastructures  # noqa: F401
    with contextlib.suppress(ImportError):
        import ray._private.arrow_serialization  # noqa: F401


_load_ray_serialization_addons()
load_async_backend()
share_tls_contexts()
build_deferred_models()
