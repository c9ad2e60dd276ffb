"""Image functions: a provider's function whose code lives in a container image.

``QiskitFunction(title="fn", provider="acme", image="repo/name:tag")`` is uploaded like any function
(a versioned entry in the store, a Prefect flow + deployment, files, jobs and logs as usual), but its
deployment runs on a Prefect **Docker work pool** (``qsflow-docker``, prefect-docker's worker) with
the function's image. The container runs qsflow's own runner flow, so arguments, statuses, result,
logs, error events and ``/data`` work as for the process pool.

What the image must hold is Qiskit Serverless's custom-image layout: ``/runner/runner.py`` defining
``class Runner`` whose ``run(arguments)`` returns the result; qsflow's program for the function is
``image_entry.py`` (uploaded as its ``main.py``), which calls it. The image needs a glibc Linux
userland; its own ``python3`` (when it has one) runs the Runner, with the image's packages first and
qsflow's behind them when the Python versions match. Prefect and qsflow need not be in the image:
the pool bind-mounts qsflow's checkout, virtual environment and base interpreter read-only at the
same paths, and qsflow's home read-write (runner's job directory, local store); the containers use
the host's network (loopback server) and run ``python -m prefect flow-run execute`` with qsflow's
interpreter, so job.stop() ends them as it ends a process-pool job. Where the base interpreter is the system's own (``/usr``), the
image must have that same Python at that path (mounting ``/usr`` over an image is not possible).
"""

from __future__ import annotations

import copy
import io
import os
import re
import sys
import tarfile
from pathlib import Path
from typing import Any, Optional

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import DeploymentUpdate, WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from deployments.settings import home
from flows.data_mounts import IN_CONTAINER_ENV

IMAGE_POOL = os.environ.get("QSFLOW_DOCKER_POOL", "qsflow-docker")
IMAGE_TAG = "qsflow-image"          # deployment tag of an image function
ENTRYPOINT = "main.py"              # the uploaded program of an image function
ENTRY_SOURCE = Path(__file__).with_name("image_entry.py")
QSFLOW_ROOT = Path(__file__).resolve().parent.parent
_SYSTEM_PREFIXES = {"/", "/usr", "/usr/local"}
# A Docker image reference: [registry[:port]/]path[:tag][@digest], lower-case path components.
_REFERENCE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[a-f0-9]{64})?$"
)


class DockerPoolMissing(RuntimeError):
    """The server has no Docker work pool for image functions; the message says how to create one."""


def create_command() -> str:
    return "qsflow docker-pool create && prefect worker start --pool {pool} --type docker".format(pool=IMAGE_POOL)


def validate(image: str, provider: Optional[str], dependencies: Optional[list[str]]) -> None:
    """Raise ValueError naming the fix when ``image`` cannot name an image function."""
    if not isinstance(image, str) or not _REFERENCE.match(image):
        raise ValueError(f"image {image!r} is not a Docker image reference; write it like "
                         "'repo/name:tag' or 'registry.example:5000/repo/name:tag'.")
    if not provider:
        raise ValueError("An image function belongs to a provider: QiskitFunction(title='my-function', "
                         f"provider='my-provider', image={image!r}) or title='my-provider/my-function'.")
    if dependencies:
        raise ValueError("An image function's packages are part of its image: install "
                         f"{', '.join(dependencies)} in the image and upload without dependencies.")


def entry_archive() -> bytes:
    """The program archive of an image function: ``main.py``, which runs the image's Runner."""
    data = ENTRY_SOURCE.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(ENTRYPOINT)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# -- the work pool ------------------------------------------------------------------------------

def runtime_mounts() -> list[str]:
    """Volumes that give any container qsflow's runner: its code and interpreters (ro), its home (rw)."""
    read_only: list[Path] = []
    for path in (QSFLOW_ROOT, Path(sys.prefix), Path(sys.base_prefix)):
        path = path.resolve()
        if str(path) in _SYSTEM_PREFIXES or any(path.is_relative_to(p) for p in read_only):
            continue
        read_only = [p for p in read_only if not p.is_relative_to(path)] + [path]
    volumes = [f"{p}:{p}:ro" for p in read_only]
    return volumes + [f"{home()}:{home()}"]


def job_defaults() -> dict[str, Any]:
    """Job-variable defaults of the pool, computed on the machine the worker runs on."""
    env = {
        "QSFLOW_HOME": str(home()),
        IN_CONTAINER_ENV: "1",
        # A job's Ray: the configured cluster, else a Ray of its own inside the container (as a Qiskit
        # Serverless custom image is its job's Ray node); the host's local head is not reachable.
        "QSFLOW_RAY_ADDRESS": os.environ.get("QSFLOW_RAY_ADDRESS") or "local",
        "PYTHONUNBUFFERED": "1",
    }
    return {
        # Prefect's own flow-run command (the worker's default), with qsflow's interpreter: it runs the
        # engine in a child process and kills it when the job is stopped (Cancelling).
        "command": f"{Path(sys.prefix) / 'bin' / 'python'} -m prefect flow-run execute",
        "env": env,
        "volumes": runtime_mounts(),
        "network_mode": "host",
        "image_pull_policy": "IfNotPresent",
        "auto_remove": True,
        # The runner writes the job's directory and the local store under qsflow's home (root's). The
        # flow-run command copies its working directory into a workspace first: an empty one.
        "container_create_kwargs": {"user": "0", "working_dir": "/qsflow-job"},
    }


def base_job_template() -> dict[str, Any]:
    """prefect-docker's own base job template with qsflow's defaults filled in."""
    from prefect_docker.worker import DockerWorker

    template = copy.deepcopy(DockerWorker.get_default_base_job_template())
    properties = template["variables"]["properties"]
    for name, value in job_defaults().items():
        properties[name]["default"] = value
    return template


def ensure_pool(client: SyncPrefectClient) -> str:
    """Create the Docker work pool for image functions (or refresh its defaults); returns its name."""
    template = base_job_template()
    try:
        client.create_work_pool(WorkPoolCreate(name=IMAGE_POOL, type="docker", base_job_template=template,
                                               description="qsflow image functions"))
    except ObjectAlreadyExists:
        client.update_work_pool(IMAGE_POOL, WorkPoolUpdate(base_job_template=template))
    return IMAGE_POOL


def docker_pool(client: SyncPrefectClient) -> Any:
    """The Docker work pool, or DockerPoolMissing saying how to create it."""
    try:
        pool = client.read_work_pool(IMAGE_POOL)
    except ObjectNotFound:
        raise DockerPoolMissing(
            f"Image functions run on the Prefect Docker work pool '{IMAGE_POOL}', which this server does "
            f"not have. Create it and start its worker where Docker runs: `{create_command()}` "
            "(needs the prefect-docker package and a Docker engine)."
        ) from None
    if pool.type != "docker":
        raise DockerPoolMissing(
            f"Work pool '{IMAGE_POOL}' is of type {pool.type!r}; image functions need a Docker work pool. "
            f"Delete it (`prefect work-pool delete {IMAGE_POOL}`), then `{create_command()}`."
        )
    return pool


def deployment_settings(client: SyncPrefectClient, image: str) -> dict[str, Any]:
    """``create_deployment`` arguments of an image function: on the Docker pool when it exists.

    Upload works without the pool: the deployment then has none, and :func:`ready_to_run` moves it
    onto the pool once there is one.
    """
    try:
        docker_pool(client)
    except DockerPoolMissing:
        return {"work_pool_name": None, "job_variables": {"image": image}}
    return {"work_pool_name": IMAGE_POOL, "job_variables": {"image": image}}


def ready_to_run(client: SyncPrefectClient, deployment: Any) -> None:
    """Before a job of an image function is queued: the pool must exist, the deployment be on it."""
    if IMAGE_TAG not in (deployment.tags or []):
        return
    docker_pool(client)
    if deployment.work_pool_name != IMAGE_POOL:
        client.update_deployment(deployment.id, DeploymentUpdate(
            work_pool_name=IMAGE_POOL, job_variables=dict(deployment.job_variables or {})))
