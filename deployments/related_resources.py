"""Prefect's related-resource cache (``prefect.events.related.RESOURCE_CACHE``), seeded with objects qsflow has.

Prefect's events code names on each event a run emits the run's flow, deployment, work queue and work pool, and
reads each from the API the first time a process needs it, keyed ``<kind>.<id>`` (``flow.<uuid>``,
``work-pool.<name>``). A process handed those objects by the one that started it (the warm worker's forked runs,
a job's Ray workers) puts them there first and saves the reads.
"""

from __future__ import annotations

from typing import Any


def seed(objects: dict[str, Any]) -> None:
    """Put ``objects`` (``{"<kind>.<id>": object}``, Prefect's keys) in the cache, leaving entries already there."""
    if not objects:
        return
    from prefect.events.related import RESOURCE_CACHE
    from prefect.types._datetime import now

    stamp = now("UTC")
    for key, obj in objects.items():
        RESOURCE_CACHE.setdefault(key, ({"kind": key.split(".", 1)[0], "object": obj}, stamp))
