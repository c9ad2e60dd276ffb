"""Qiskit Serverless's parallel-workflow names: ``distribute_task``, ``get``, ``put``, ``get_refs_by_status``, ``Target``.

A program written for Qiskit Serverless (``from qiskit_serverless import distribute_task, get``) runs unchanged:
inside a qsflow job its distributed tasks run on the shared Ray cluster and show as Prefect task runs of the job;
in a plain script they run on the local Ray head (or ``QSFLOW_RAY_ADDRESS``) with no Prefect server involved.
"""

from __future__ import annotations

from tasks.child_jobs import distribute_qiskit_function
from tasks.distributed import DistributedTask, distribute_task, get, get_refs_by_status, put
from tasks.target import Target, UnsatisfiableTargetError

__all__ = [
    "DistributedTask",
    "Target",
    "UnsatisfiableTargetError",
    "distribute_qiskit_function",
    "distribute_task",
    "get",
    "get_refs_by_status",
    "put",
]
