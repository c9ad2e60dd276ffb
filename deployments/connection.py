"""One way to reach a Prefect API: a settings context naming the URL, and a sync client for it.

Both are built once per process and kept (per URL, auth string and Prefect environment): rebuilding Prefect's
settings model and opening a new client (its TLS context) cost ~70 ms of CPU per call here, which every
``job.status()`` paid (py-spy / cProfile; bench: ``python -m bench``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import ssl
import threading
import types
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


class _SharedTLS(types.ModuleType):
    """``ssl`` as Prefect's client modules see it, except that a verifying context (one built from a CA file or
    directory) is built once per process and shared: every Prefect client builds its own otherwise."""

    def __init__(self) -> None:
        super().__init__("ssl")
        self._made: dict[tuple, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    def create_default_context(self, purpose: Any = ssl.Purpose.SERVER_AUTH, *, cafile: Any = None,
                               capath: Any = None, cadata: Any = None) -> ssl.SSLContext:
        if cafile is None and capath is None and cadata is None:  # callers change this one (no verification)
            return ssl.create_default_context(purpose)
        key = (purpose, cafile, capath, cadata)
        with self._lock:
            if key not in self._made:
                self._made[key] = ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
            return self._made[key]


def load_async_backend() -> None:
    """Import anyio's asyncio backend now (long-lived processes whose forks or tasks use Prefect's clients).

    anyio imports it at a process's first async HTTP request: Prefect's events and logs workers' first send. That
    cost ~11 ms of CPU in every job's runner (forked from the warm worker's forkserver, which had not loaded it)
    and ~0.1 s of a Ray pool worker's first batch (py-spy)."""
    with contextlib.suppress(ImportError):
        import anyio._backends._asyncio  # noqa: F401


def share_tls_contexts() -> None:
    """Let every Prefect client of this process share one TLS context (long-lived processes: the warm worker and
    its runs).

    Prefect 3.9 builds one per client (``ssl.create_default_context(cafile=...)``, ~18 ms of CPU here, loading the
    CA bundle), plus one per server-version check, and a job's runner makes about eleven: its log and event
    workers restart after each flush, the engine's client, the suspension observer's. Same verification, same CA
    file; an SSLContext is safe to share between connections. A Prefect that builds its contexts elsewhere is
    left as it is.
    """
    import importlib

    for name in ("prefect.client.orchestration", "prefect._internal.version_checking"):
        with contextlib.suppress(ImportError):
            module = importlib.import_module(name)
            if getattr(module, "ssl", None) is ssl:
                module.ssl = _SHARED_TLS  # type: ignore[attr-defined]
    # Built now, the one Prefect's clients ask for: processes forked from this one (the forkserver's runs) start
    # with it instead of each building it for its first client.
    shared_tls_context()


def shared_tls_context() -> ssl.SSLContext:
    """The process's TLS context verifying Prefect's API as its clients do (``PREFECT_API_SSL_CERT_FILE``, else
    certifi's bundle): built once, for clients of our own (an ``httpx.Client(verify=...)``)."""
    import certifi
    from prefect.settings import PREFECT_API_SSL_CERT_FILE

    return _SHARED_TLS.create_default_context(cafile=PREFECT_API_SSL_CERT_FILE.value() or certifi.where())


_SHARED_TLS = _SharedTLS()


@atexit.register
def _close() -> None:
    for _, _, client in list(_kept.values()):
        with contextlib.suppress(Exception):
            client.__exit__(None, None, None)
    _kept.clear()
