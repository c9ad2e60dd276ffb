"""What the embedded worker's forkserver loads once, so each job's runner process starts with it loaded.

Imported only in that forkserver (``deployments.warm_worker``). Besides Prefect's flow engine and qsflow's runner
modules it loads Prefect's collections (prefect-docker, prefect-ray: their entry points), which Prefect imports on
a job's first block load (the store) and which cost ~0.5 s per job otherwise (py-spy, this machine). It also
builds, once, what each job's process would otherwise build for itself: the TLS context Prefect's clients use,
anyio's asyncio backend and rich's emoji table (imported at a run's first async request and first console
line, ~13 ms of CPU per job), Prefect's deferred pydantic models, whether the machine allows private mount
namespaces, and the Prefect settings variables a run has when it can keep these settings.
"""

import contextlib

from prefect._internal.plugins.collections import load_prefect_collections

import prefect.engine  # noqa: F401
import prefect.flow_engine  # noqa: F401
import blocks.storage  # noqa: F401
import deployments.arguments_schema  # noqa: F401
import deployments.programs  # noqa: F401
import deployments.ray_cluster  # noqa: F401
import flows.runner  # noqa: F401
import tasks.ray_block  # noqa: F401
import tasks.task_runs  # noqa: F401

load_prefect_collections()

from deployments.connection import load_async_backend, share_tls_contexts

share_tls_contexts()
load_async_backend()
with contextlib.suppress(ImportError):
    # rich's emoji table, which a run's console log handler imports when it renders its first line (~2 ms)
    import rich._emoji_codes  # noqa: F401

from deployments.prefect_models import build_deferred_models

build_deferred_models()

# Whether a job's program can get a private mount namespace for /data (flows.data_mounts): a probe that runs
# `unshare` once and is cached per process; answered here, every job's runner inherits the answer instead of
# running the probe itself (~5 ms per job)
from flows.data_mounts import mount_namespaces_available

mount_namespaces_available()


# Compared with each run's by ``deployments.warm_worker._execute``: equal, the run keeps these settings.
from deployments.warm_worker import run_settings_variables

RUN_SETTINGS_VARIABLES = run_settings_variables()
