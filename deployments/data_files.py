"""The flat /data store: data files per user and per provider, as Qiskit Serverless lays them out.

Scopes (folders of the QsflowStore):
- a user's own functions share the user space ``data/users/<user>/``;
- a provider function ``acme/fn`` has a user space ``data/users/<user>/acme/fn/`` and a provider
  space ``data/providers/acme/fn/``, reachable only by members of ``acme`` and by that function's
  own jobs.
Every upload and delete emits a Prefect event (``qsflow.file.uploaded`` / ``qsflow.file.deleted``).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from blocks.file_types import check_file, validate_name
from blocks.storage import QsflowStore
from deployments.access import Forbidden, Principal


@dataclass(frozen=True)
class Scope:
    """One folder of data files: whose it is and where it lives in the store."""

    kind: str  # "user" or "provider"
    user: str
    provider: Optional[str]
    function: Optional[str]
    folder: str


def _split(full_title: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    if not full_title:
        return None, None
    provider, _, title = full_title.rpartition("/")
    return provider or None, title


def user_scope(principal: Principal, full_title: Optional[str]) -> Scope:
    provider, title = _split(full_title)
    if provider:
        # The user space of a provider function is the user's own: no membership needed.
        folder = f"data/users/{principal.user}/{provider}/{title}"
    else:
        folder = f"data/users/{principal.user}"
    return Scope("user", principal.user, provider, title, folder)


def provider_scope(principal: Principal, full_title: Optional[str]) -> Scope:
    provider, title = _split(full_title)
    if not provider:
        raise ValueError("`function` doesn't have a provider.")
    if not principal.can_reach_provider(provider, title):
        raise Forbidden(f"You don't have access to the files of provider {provider} (function {provider}/{title}).")
    return Scope("provider", principal.user, provider, title, f"data/providers/{provider}/{title}")


def emit(event: str, scope: Scope, name: str, size: Optional[int] = None) -> None:
    """Emit a file event to the configured Prefect API (none configured: nothing to tell)."""
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return

    resource = {
        "prefect.resource.id": f"qsflow.file.{scope.folder.replace('/', '.')}.{name}",
        "prefect.resource.name": name,
        "qsflow.scope": scope.kind,
        "qsflow.user": scope.user,
        "qsflow.provider": scope.provider or "",
        "qsflow.function": (f"{scope.provider}/{scope.function}" if scope.provider else scope.function) or "",
    }
    emit_event(event=event, resource=resource, payload={"name": name, "size": size})


def upload(store: QsflowStore, scope: Scope, file: str | os.PathLike) -> str:
    """Check and store a local file in ``scope``; return Qiskit Serverless's message naming it."""
    path = Path(file)
    if not path.is_file():
        raise ValueError(f"Can not open file {str(path)!r}: give the path of an existing file.")
    name = validate_name(path.name)
    check_file(name, path, store.allowed_types)
    size = store.upload_file(f"{scope.folder}/{name}", str(path))
    emit("qsflow.file.uploaded", scope, name, size)
    return json.dumps({"message": f"{scope.folder}/{name}"})


def list_files(store: QsflowStore, scope: Scope) -> list[str]:
    return store.list_files(scope.folder)


def download(store: QsflowStore, scope: Scope, file: str, target_name: Optional[str] = None,
             download_location: str = "./") -> str:
    """Copy a stored file to ``download_location``; return the downloaded file's path."""
    name = validate_name(file)
    target_name = validate_name(target_name) if target_name else f"downloaded_{uuid.uuid4().hex[:8]}_{name}"
    if not store.exists(f"{scope.folder}/{name}"):
        raise FileNotFoundError(f"Requested file was not found: {name!r} (see client.files()).")
    Path(download_location).mkdir(parents=True, exist_ok=True)
    target = os.path.join(download_location, target_name)
    store.download_to(f"{scope.folder}/{name}", target)
    return target


def delete(store: QsflowStore, scope: Scope, file: str) -> str:
    name = validate_name(file)
    if not store.exists(f"{scope.folder}/{name}"):
        raise FileNotFoundError(f"Requested file was not found: {name!r} (see client.files()).")
    store.delete(f"{scope.folder}/{name}")
    emit("qsflow.file.deleted", scope, name)
    return "Requested file was deleted."
