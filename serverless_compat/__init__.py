"""qsflow's Qiskit-Serverless-shaped face.

Client code imports from here (or, after :func:`install_as_qiskit_serverless`, from
``qiskit_serverless``); programs running in a qsflow job get this module as ``qiskit_serverless``.
"""

from __future__ import annotations

import sys

from serverless_compat.distribute import (
    Target,
    UnsatisfiableTargetError,
    distribute_qiskit_function,
    distribute_task,
    get,
    get_refs_by_status,
    put,
)
from serverless_compat.errors import QiskitServerlessException, ServerlessError
from serverless_compat.function import QiskitFunction, QiskitPattern
from serverless_compat.job import Configuration, Job, JobEvent
from serverless_compat.job_records import send_error
from serverless_compat.program import (
    get_arguments,
    is_running_in_serverless,
    is_trial,
    save_result,
    update_status,
)

__version__ = "0.1.0"

from serverless_compat.program_logs import get_logger, get_provider_logger

_CLIENTS = ("BaseClient", "ServerlessClient", "LocalClient", "IBMServerlessClient")
_RUNTIME = ("get_runtime_service", "ServerlessRuntimeService")


def __getattr__(name: str):
    # The clients pull in Prefect's client and the Runtime service qiskit_ibm_runtime: programs that
    # only need get_arguments don't pay for importing them.
    if name in _CLIENTS:
        from serverless_compat import client

        return getattr(client, name)
    if name in _RUNTIME:
        from serverless_compat import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'serverless_compat' has no attribute {name!r}")


def install_as_qiskit_serverless() -> None:
    """Make ``import qiskit_serverless`` give this module (like ``pymysql.install_as_MySQLdb()``)."""
    sys.modules["qiskit_serverless"] = sys.modules[__name__]


__all__ = [
    *_CLIENTS,
    *_RUNTIME,
    "JobEvent",
    "get_logger",
    "get_provider_logger",
    "send_error",
    "Configuration",
    "Job",
    "QiskitFunction",
    "QiskitPattern",
    "QiskitServerlessException",
    "ServerlessError",
    "Target",
    "UnsatisfiableTargetError",
    "distribute_qiskit_function",
    "distribute_task",
    "get",
    "get_arguments",
    "get_refs_by_status",
    "install_as_qiskit_serverless",
    "is_running_in_serverless",
    "is_trial",
    "put",
    "save_result",
    "update_status",
]
