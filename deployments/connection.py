"""One way to reach a Prefect API: a settings context naming the URL, and a sync client for it."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings


@contextlib.contextmanager
def prefect_api(url: str, auth_string: Optional[str] = None) -> Iterator[SyncPrefectClient]:
    """Point Prefect at ``url`` for the duration (blocks, events, clients) and yield a sync client.

    ``auth_string`` (a server's basic-auth ``user:password``) overrides PREFECT_API_AUTH_STRING.
    """
    updates = {PREFECT_API_URL: url}
    if auth_string:
        updates[PREFECT_API_AUTH_STRING] = auth_string
    with temporary_settings(updates=updates):
        with get_client(sync_client=True) as client:
            yield client
