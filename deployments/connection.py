"""One way to reach a Prefect API: a settings context naming the URL, and a sync client for it."""

from __future__ import annotations

import contextlib
from typing import Iterator

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import PREFECT_API_URL, temporary_settings


@contextlib.contextmanager
def prefect_api(url: str) -> Iterator[SyncPrefectClient]:
    """Point Prefect at ``url`` for the duration (blocks, events, clients) and yield a sync client."""
    with temporary_settings(updates={PREFECT_API_URL: url}):
        with get_client(sync_client=True) as client:
            yield client
