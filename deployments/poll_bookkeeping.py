"""The embedded server records a work pool's polls at most every ``DELAY_S`` seconds (installed by
``server.serve_api`` only).

Each ``get_scheduled_flow_runs`` request has Prefect's server schedule two background tasks (docket) for the pool:
one writes its queues' ``last_polled`` (and READY status), one its deployments' READY status. Both are keyed per
pool, and Prefect already drops one scheduled while another with the same key is pending or running. They are
scheduled ``DELAY_S`` later instead of at once, so the polls in between add nothing: qsflow's worker polls whenever
a run is scheduled or ends, besides every second, and these tasks were most of a poll's ~21 ms of the server's CPU
(profile of 20 trivial jobs). A queue or deployment shows READY and its last poll at most ``DELAY_S`` later;
Prefect marks them NOT_READY only after a minute without polls.
"""

from __future__ import annotations

import datetime
from typing import Any

DELAY_S = 2.0
KEYS = ("mark_work_queues_ready:work_pool:", "mark_deployments_ready:work_pool:")


def install() -> None:
    """Delay the two tasks in this process's docket (idempotent; a docket without ``add`` is left as it is)."""
    from docket import Docket

    original = getattr(Docket, "add", None)
    if original is None or getattr(original, "qsflow_delayed_poll_marks", False):
        return

    def add(self: Any, function: Any, when: Any = None, key: Any = None) -> Any:
        if when is None and isinstance(key, str) and key.startswith(KEYS):
            when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=DELAY_S)
        return original(self, function, when, key)

    add.qsflow_delayed_poll_marks = True  # type: ignore[attr-defined]
    Docket.add = add  # type: ignore[method-assign]
