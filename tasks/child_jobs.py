"""``distribute_qiskit_function``: run a Python function as its own qsflow job.

Calling the decorated function uploads it (pickled by value with cloudpickle, beside a small
entrypoint) as a function titled after it, runs it with the call's keyword arguments, and returns a
Ray reference at once; ``get(ref)`` waits for the child job and returns what the function returned
(or raises the child's error). Inside a job the child is a Prefect subflow run of the parent job.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

ENTRYPOINT = "qsflow_child_entrypoint.py"
_ENTRYPOINT_SOURCE = '''# Written by qsflow's distribute_qiskit_function: run the pickled function with the job's arguments.
import cloudpickle

from qiskit_serverless import get_arguments, save_result

with open("function.pkl", "rb") as handle:
    function = cloudpickle.load(handle)
result = function(**get_arguments())
if result is not None:
    save_result(result)
'''


def _title(function: Callable[..., Any]) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", function.__name__).strip("-._") or "function"


def _wait_for_job(host: str, job_id: str) -> Any:
    from serverless_compat.client import ServerlessClient

    return ServerlessClient(host=host).job(job_id).result(cadence=1)


def distribute_qiskit_function(provider: Optional[str] = None, dependencies: Optional[list[str]] = None,
                               working_dir: Optional[str] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function so that each call runs it as a child job; ``get()`` resolves the result."""

    def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def submit(*args: Any, **kwargs: Any) -> Any:
            if args:
                raise TypeError(
                    f"{function.__name__} runs as a job: pass its arguments by keyword, "
                    f"e.g. {function.__name__}(x=1) instead of {function.__name__}(1)."
                )
            import cloudpickle

            from serverless_compat.client import ServerlessClient
            from serverless_compat.function import QiskitFunction
            from tasks import ray_connection

            client = ServerlessClient()
            with tempfile.TemporaryDirectory(prefix="qsflow-child-") as tmp:
                source = Path(working_dir) if working_dir else Path(tmp)
                if working_dir:
                    # Keep the user's folder untouched: copy it next to the pickled function.
                    import shutil

                    shutil.copytree(source, tmp, dirs_exist_ok=True)
                if function.__module__ != "__main__" and not working_dir:
                    # Ship the function's module with it: the child job has no copy of its source.
                    cloudpickle.register_pickle_by_value(sys.modules[function.__module__])
                Path(tmp, "function.pkl").write_bytes(cloudpickle.dumps(function))
                Path(tmp, ENTRYPOINT).write_text(_ENTRYPOINT_SOURCE)
                uploaded = client.upload(QiskitFunction(
                    title=_title(function), provider=provider, entrypoint=ENTRYPOINT,
                    working_dir=tmp, dependencies=dependencies,
                ))
            job = client.run(uploaded, kwargs, parent_job_id=os.environ.get("QSFLOW_JOB_ID"))
            ray = ray_connection.connect()
            waiter = ray.remote(num_cpus=0)(_wait_for_job)
            return waiter.remote(client.host, job.job_id)

        return submit

    return decorator
