"""``get_runtime_service``: Qiskit Runtime inside a job, with its job ids recorded for the job.

With IBM Quantum credentials (arguments, or ``QISKIT_IBM_TOKEN``/``QISKIT_IBM_INSTANCE``/
``QISKIT_IBM_CHANNEL`` as Qiskit Serverless sets them) it returns a ``QiskitRuntimeService``
subclass whose jobs are recorded, so ``job.runtime_jobs()`` lists them and ``job.stop()`` cancels
them. Without credentials (no network to IBM here) it returns Qiskit Runtime's local service:
fake backends by name, primitives run locally.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from qiskit_ibm_runtime import QiskitRuntimeService
from qiskit_ibm_runtime.fake_provider.local_service import QiskitRuntimeLocalService

from serverless_compat.job_records import record_runtime_job


class _Recording:
    def _run(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        job = super()._run(*args, **kwargs)  # type: ignore[misc]
        session = getattr(job, "session_id", None)
        record_runtime_job(job.job_id(), session if isinstance(session, str) else None)
        return job


class ServerlessRuntimeService(_Recording, QiskitRuntimeService):
    """QiskitRuntimeService that records each Runtime job it starts for the current qsflow job."""


class LocalServerlessRuntimeService(_Recording, QiskitRuntimeLocalService):
    """Qiskit Runtime's local service (fake backends), recording job ids like the remote one."""


def get_runtime_service(channel: Optional[str] = None, token: Optional[str] = None,
                        instance: Optional[str] = None, url: Optional[str] = None):
    """A Runtime service for the program: remote with credentials, local (fake backends) without."""
    channel = channel or os.environ.get("QISKIT_IBM_CHANNEL")
    token = token or os.environ.get("QISKIT_IBM_TOKEN")
    instance = instance or os.environ.get("QISKIT_IBM_INSTANCE")
    url = url or os.environ.get("QISKIT_IBM_URL")
    if channel == "local" or not token:
        return LocalServerlessRuntimeService()
    return ServerlessRuntimeService(channel=channel or "ibm_quantum_platform", token=token,
                                    instance=instance, url=url)
