"""Uploaded programs: each is a versioned archive in the store and a Prefect flow + deployment.

A program titled ``transpile-remote`` becomes the Prefect flow ``transpile-remote`` with one
deployment of the same name in the ``qsflow`` work pool; its entrypoint is qsflow's runner flow,
whose parameters name the program and version to run. Every upload stores a new version
(``programs/<title>/<n>/``) and points the deployment at it; older versions stay in the store.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Union

from packaging.requirements import InvalidRequirement, Requirement
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from blocks.storage import QsflowStore
from deployments import arguments_schema, dependency_policy
from deployments import images
from deployments.settings import WORK_POOL, max_upload_bytes

RUNNER_ENTRYPOINT = "flows.runner:run_program"
TITLE_MAX = 100
_EXCLUDED_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints", ".venv"}
_TITLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")


class ProgramNotFound(LookupError):
    """No program with that title was uploaded."""


@dataclass
class ProgramSpec:
    """What is stored for one version of a program (``meta.json`` beside its archive)."""

    title: str
    entrypoint: str
    version: int = 0
    provider: Optional[str] = None
    env_vars: dict[str, str] = field(default_factory=dict)
    dependencies: list[str] = field(default_factory=list)
    description: Optional[str] = None
    image: Optional[str] = None  # an image function's container image (deployments/images.py)
    uploaded_at: float = 0.0
    arguments_schema: Optional[Union[dict, bool]] = None  # JSON Schema of the arguments (None: no schema)

    @property
    def full_title(self) -> str:
        return f"{self.provider}/{self.title}" if self.provider else self.title

    @property
    def store_dir(self) -> str:
        return f"programs/{self.full_title}"


def validate_title(title: str) -> None:
    """Raise ValueError naming the rule when ``title`` cannot name a program."""
    if not isinstance(title, str) or not title.strip():
        raise ValueError("A function needs a non-empty title, e.g. QiskitFunction(title='my-function', ...).")
    if len(title) > TITLE_MAX:
        raise ValueError(f"Function title {title[:20]!r}... is {len(title)} characters; use at most {TITLE_MAX}.")
    if not _TITLE.match(title):
        raise ValueError(
            f"Function title {title!r} may hold letters, digits, spaces, '.', '_' and '-' only "
            "(no '/', no control characters); put a provider in QiskitFunction(provider=...)."
        )


def validate_dependencies(dependencies: Optional[list[str]]) -> list[str]:
    """Each entry must be a PEP 508 requirement string; return them unchanged."""
    if dependencies is not None and (isinstance(dependencies, (str, bytes)) or not isinstance(dependencies, (list, tuple))):
        raise ValueError(
            f"dependencies={dependencies!r} must be a list of requirement strings, e.g. dependencies=['numpy==2.1.0']."
        )
    result = []
    for dep in dependencies or []:
        try:
            Requirement(dep)
        except (InvalidRequirement, TypeError) as exc:
            raise ValueError(
                f"Dependency {dep!r} is not a valid requirement ({exc}). "
                "Write it as pip would take it, e.g. 'numpy==2.1.0' or 'scipy>=1.13'."
            ) from None
        result.append(dep)
    return result


def pack_working_dir(working_dir: str | Path, entrypoint: str) -> bytes:
    """A gzip tar of ``working_dir``'s contents; checks the entrypoint, links and size first."""
    if not isinstance(working_dir, (str, os.PathLike)):
        raise ValueError(f"working_dir={working_dir!r} must be the path of the folder holding your program.")
    root = Path(working_dir).expanduser()
    if not root.is_dir():
        raise ValueError(f"working_dir {str(root)!r} is not a directory. Pass the folder holding your program.")
    root = root.resolve()
    if not isinstance(entrypoint, str) or not entrypoint.endswith(".py"):
        raise ValueError(f"entrypoint {entrypoint!r} must name a .py file inside working_dir, e.g. 'program.py'.")
    if Path(entrypoint).is_absolute():
        raise ValueError(f"entrypoint {entrypoint!r} must be a path relative to working_dir, e.g. 'program.py'.")
    entry = (root / entrypoint).resolve()
    if not entry.is_file() or not entry.is_relative_to(root):
        raise ValueError(
            f"Entrypoint file [{entrypoint}] does not exist in [{root}] working directory."
        )
    members = _members(root)
    # Measured before anything is read, over the files themselves, as Qiskit Serverless's client does.
    size, limit = sum(path.lstat().st_size for path, _ in members if path.is_file()), max_upload_bytes()
    if size > limit:
        raise ValueError(
            f"working_dir {root} holds {size / 2**20:.1f} MB, over the {limit / 2**20:.3g} MB allowed. Move data "
            "files to the data store (client.file_upload) or raise QSFLOW_MAX_UPLOAD_MB."
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, rel in members:
            tar.add(path, arcname=str(rel), recursive=False)
    return buffer.getvalue()


def _members(root: Path) -> list[tuple[Path, Path]]:
    """What an upload packs: every path under ``root`` but caches; refuses links that lead outside it."""
    members = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _EXCLUDED_DIRS for part in rel.parts):
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            raise ValueError(
                f"{rel} is a symlink leading outside working_dir ({path.resolve()}); "
                "copy the file into working_dir instead."
            )
        if not (path.is_symlink() or path.is_file() or path.is_dir()):
            raise ValueError(f"{rel} in working_dir is not a plain file (a socket, pipe or device); remove it.")
        members.append((path, rel))
    return members


def list_versions(store: QsflowStore, full_title: str) -> list[int]:
    try:
        names = store.list_names(f"programs/{full_title}")
    except ValueError:  # a title no upload could have stored ('..'): no such function
        return []
    return sorted(int(v) for v in names if v.isdigit())


def read_spec(store: QsflowStore, full_title: str, version: Optional[int] = None) -> ProgramSpec:
    versions = list_versions(store, full_title)
    if not versions:
        raise ProgramNotFound(f"Qiskit Function {full_title} doesn't exist.")
    if version is None:
        version = versions[-1]
    if version not in versions:
        raise ProgramNotFound(f"Qiskit Function {full_title} has no version {version}; it has {versions}.")
    data = json.loads(store.read_bytes(f"programs/{full_title}/{version}/meta.json"))
    return ProgramSpec(**data)


def register(client: SyncPrefectClient, store: QsflowStore, spec: ProgramSpec, working_dir: str | Path) -> ProgramSpec:
    """Store a new version of the program and point its Prefect deployment at it."""
    validate_title(spec.title)
    if spec.provider is not None:
        validate_title(spec.provider)
    spec.dependencies = validate_dependencies(spec.dependencies)
    dependency_policy.check(spec.dependencies, dependency_policy.allowlist())
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in (spec.env_vars or {}).items()):
        raise ValueError("env_vars must map strings to strings, e.g. env_vars={'LOG_LEVEL': 'debug'}.")
    if spec.image is not None:
        images.validate(spec.image, spec.provider, spec.dependencies)
        spec.entrypoint = images.ENTRYPOINT  # the image's Runner, called by qsflow's entry program
        archive = images.entry_archive()
    else:
        archive = pack_working_dir(working_dir, spec.entrypoint)

    versions = list_versions(store, spec.full_title)
    if spec.arguments_schema is None and versions:
        # As on Qiskit Serverless: an upload without a schema keeps the stored one; {} removes it.
        spec.arguments_schema = read_spec(store, spec.full_title, versions[-1]).arguments_schema
    spec.arguments_schema = arguments_schema.check(spec.arguments_schema)
    spec.version = (versions[-1] + 1) if versions else 1
    spec.uploaded_at = time.time()
    folder = f"{spec.store_dir}/{spec.version}"
    store.write_bytes(f"{folder}/program.tar.gz", archive)
    # meta.json last: a version is listed only once both files are in place.
    store.write_bytes(f"{folder}/meta.json", json.dumps(asdict(spec)).encode())
    _upsert_deployment(client, spec)
    from deployments import status_relay

    status_relay.ensure(client)  # the server reports jobs that end with no qsflow process left to say so
    return spec


# A deployment's tag naming its function; its runs carry it too, so Prefect's events about them name the function
# (the server's status relay reads it there: deployments.status_relay).
FUNCTION_TAG_PREFIX = "qsflow-function:"


def deployment_name(full_title: str) -> str:
    """Prefect's ``flow/deployment`` name of a program's deployment."""
    name = full_title.replace("/", "--")
    return f"{name}/{name}"


def _upsert_deployment(client: SyncPrefectClient, spec: ProgramSpec) -> None:
    from prefect.utilities.callables import parameter_schema

    from flows.runner import run_program

    try:
        client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
    except ObjectAlreadyExists:
        pass
    pool = images.deployment_settings(client, spec.image) if spec.image else {"work_pool_name": WORK_POOL}
    name = spec.full_title.replace("/", "--")
    flow_id = client.create_flow_from_name(name)
    client.create_deployment(
        schedules=_kept_schedules(client, spec.full_title),  # an upsert replaces a deployment's schedules
        flow_id=flow_id,
        name=name,
        version=str(spec.version),
        description=spec.description or f"qsflow program {spec.full_title}",
        entrypoint=RUNNER_ENTRYPOINT,
        parameters={"program": spec.full_title, "version": spec.version},
        parameter_openapi_schema=parameter_schema(run_program).model_dump_for_openapi(),
        enforce_parameter_schema=False,
        tags=["qsflow", f"{FUNCTION_TAG_PREFIX}{spec.full_title}"] + ([f"provider:{spec.provider}"] if spec.provider else [])
        + ([images.IMAGE_TAG] if spec.image else []),
        **pool,
    )


def _kept_schedules(client: SyncPrefectClient, full_title: str) -> list:
    """The program's current deployment schedules (``deployments.schedules``), to carry over an upload."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate

    try:
        deployment = read_deployment(client, full_title)
    except ProgramNotFound:
        return []
    return [DeploymentScheduleCreate(schedule=s.schedule, active=s.active, parameters=s.parameters, slug=s.slug)
            for s in client.read_deployment_schedules(deployment.id)]


def read_deployment(client: SyncPrefectClient, full_title: str):
    try:
        return client.read_deployment_by_name(deployment_name(full_title))
    except ObjectNotFound:
        raise ProgramNotFound(f"Qiskit Function {full_title} doesn't exist.") from None
