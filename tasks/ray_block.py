"""The ``qsflow-ray`` config block: which Ray cluster jobs use, kept on the Prefect server.

``RayClusterConfig(address="ray://head.example:10001").save("qsflow-ray", overwrite=True)`` makes every later
job's program connect there; ``QSFLOW_RAY_ADDRESS`` in the runner's environment still wins over the block, and
with neither set jobs use the machine's local head (:mod:`deployments.ray_cluster`).
"""

from __future__ import annotations

import os
from typing import Optional

from prefect.blocks.core import Block
from pydantic import Field

from blocks import prefetched
from deployments import ray_cluster

BLOCK_NAME = "qsflow-ray"


class RayClusterConfig(Block):
    """Address of the Ray cluster qsflow jobs run their distributed tasks on."""

    _block_type_name = "qsflow Ray cluster"
    _block_type_slug = "qsflow-ray-cluster"

    address: str = Field(
        description="A Ray address: ray://HOST:10001 (Ray Client), HOST:6379 (GCS, from inside the cluster) or auto."
    )


def configured_address() -> Optional[str]:
    """``QSFLOW_RAY_ADDRESS``, else the ``qsflow-ray`` block's address, else None."""
    explicit = ray_cluster.configured_address()
    if explicit:
        return explicit
    if os.environ.get("QSFLOW_RAY_SKIP_BLOCK") == "1":
        return None
    try:
        return prefetched.load(RayClusterConfig, BLOCK_NAME).address
    except ValueError:  # no such block saved (or its type is not registered yet)
        return None


def job_ray_address() -> str:
    """The Ray address a job's program should use; starts the local head when nothing else is configured, without
    waiting for it: the program waits when it first connects (:func:`tasks.ray_connection.connect`)."""
    return configured_address() or ray_cluster.ensure_local_head(wait=False)
