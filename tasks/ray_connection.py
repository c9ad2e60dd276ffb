"""Connecting this process to the shared Ray cluster (once) and reading its capacity."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Optional

JOB_ID_ENV = "QSFLOW_JOB_ID"  # set by the runner in a job's program: the job's flow-run id
_lock = threading.Lock()
_capacity: Optional[list[dict[str, float]]] = None


def cluster_address() -> str:
    """Where to connect: ``RAY_ADDRESS`` (set in a job's program), ``QSFLOW_RAY_ADDRESS``, else the local head."""
    explicit = os.environ.get("RAY_ADDRESS") or os.environ.get("QSFLOW_RAY_ADDRESS")
    if explicit:
        return explicit
    from deployments import ray_cluster

    return ray_cluster.ensure_local_head()


def connect() -> Any:
    """Import Ray and connect to the shared cluster unless this process already is connected; return ``ray``."""
    from deployments import ray_cluster

    connected = sys.modules.get("ray")
    if connected is not None and connected.is_initialized():
        return connected  # get()/put() call this per use: no address look-up once connected
    address = cluster_address()
    local_head = ray_cluster.is_local(address)
    if local_head:
        # A job's runner names the local head without waiting for it to be ready: wait here, at first use.
        address = ray_cluster.ready_address(address)
    for key, value in ray_cluster.driver_env(address).items():
        os.environ.setdefault(key, value)  # read by Ray at import (a job's runner has set them already)
    import ray

    if local_head:
        # Ray was imported before (by the program itself): the same switch, as Ray reads it.
        import ray._private.ray_constants as ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False

    if ray.is_initialized():
        return ray
    with _lock:
        if not ray.is_initialized():
            job_id = os.environ.get(JOB_ID_ENV)
            job_config = ray.job_config.JobConfig(metadata={"qsflow_job_id": job_id}) if job_id else None
            ray.init(
                address=address,
                # No job-wide runtime_env: with one, Ray starts every worker of the job through its runtime-env
                # setup process, which imports Ray once more before the worker does (measured: ~0.4 s of CPU per
                # worker and a slower first batch than importing Prefect's task engine at the first task).
                job_config=job_config,
                log_to_driver=True,
                logging_level="WARNING",
                configure_logging=True,
            )
    return ray


def node_capacities(refresh: bool = False) -> list[dict[str, float]]:
    """Total resources of each alive node (cached; ``refresh`` re-reads them)."""
    global _capacity
    if _capacity is None or refresh:
        ray = connect()
        _capacity = [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]
    return _capacity


def reset() -> None:
    """Forget the cached capacity (after ``ray.shutdown()`` or a cluster change)."""
    global _capacity
    _capacity = None

