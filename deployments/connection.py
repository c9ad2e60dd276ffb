"""One way to reach a Prefect API: a settings context naming the URL, and a sync client for it.

Both are built once per process and kept (per URL, auth string and Prefect environment): rebuilding Prefect's
settings model and opening a new client (its TLS context) cost ~70 ms of CPU per call here, which every
``job.status()`` paid (py-spy / cProfile; bench: ``python -m bench``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from typing import Any, Iterator, Optional

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES

from deployments.settings import API_RETRIES

_lock = threading.Lock()
_kept: dict[tuple, tuple[Any, Any, SyncPrefectClient]] = {}


def _key(url: str, auth_string: Optional[str], base: Any) -> tuple:
    # A new base settings object or a changed PREFECT_* variable (a key set later, say) gets its own entry.
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PREFECT_")))
    return url, auth_string, id(base), environment


@contextlib.contextmanager
def prefect_api(url: str, auth_string: Optional[str] = None) -> Iterator[SyncPrefectClient]:
    """Point Prefect at ``url`` for the duration (blocks, events, clients) and yield a sync client.

    ``auth_string`` (a server's basic-auth ``user:password``) overrides PREFECT_API_AUTH_STRING.
    """
    import prefect.context

    context = prefect.context.get_settings_context()
    key = _key(url, auth_string, context.settings)
    kept = _kept.get(key)
    if kept is None:
        with _lock:
            kept = _kept.get(key)
            if kept is None:
                updates: dict[Any, Any] = {PREFECT_API_URL: url}
                if PREFECT_CLIENT_MAX_RETRIES.value() < API_RETRIES:  # a busy server (503): retried longer
                    updates[PREFECT_CLIENT_MAX_RETRIES] = API_RETRIES
                if auth_string:
                    updates[PREFECT_API_AUTH_STRING] = auth_string
                settings = context.settings.copy_with_update(updates=updates)
                with prefect.context.SettingsContext(profile=context.profile, settings=settings):
                    client = get_client(sync_client=True)
                    client.__enter__()
                # the base settings are kept too, so that their id is not reused by another object
                kept = _kept[key] = (context.settings, settings, client)
    _, settings, client = kept
    with prefect.context.SettingsContext(profile=context.profile, settings=settings):
        yield client


@atexit.register
def _close() -> None:
    for _, _, client in list(_kept.values()):
        with contextlib.suppress(Exception):
            client.__exit__(None, None, None)
    _kept.clear()
