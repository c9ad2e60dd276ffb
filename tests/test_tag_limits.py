"""A Ray worker's list of the Prefect server's tag concurrency limits (``tasks.job_task_runner._TagLimits``), on
the session's real server: a worker with no list reads it in the task run; a list past its TTL is re-read in the
background while task runs go on with the old one, so a limit created meanwhile applies after that read."""

from __future__ import annotations

import time
import uuid

from tasks import job_task_runner
from tasks.job_task_runner import TAG_LIMITS_TTL, _TagLimits


def _until(predicate, deadline: float = 60.0) -> None:
    give_up = time.monotonic() + deadline
    while not predicate():
        assert time.monotonic() < give_up, "gave up waiting"
        time.sleep(0.05)


def test_no_list_is_read_at_once_and_a_stale_one_in_the_background(prefect, monkeypatch):
    tag = f"resource:qsflow_tag_limits_{uuid.uuid4().hex[:8]}=1"
    limits = _TagLimits()
    prefect.create_concurrency_limit(tag=tag, concurrency_limit=1)
    try:
        assert limits.any_of([f"tag:{tag}"], client=prefect)  # no list yet: read in the call itself

        stale = _TagLimits()
        stale.seed([], read_at=time.time() - TAG_LIMITS_TTL - 5)  # the program's list, older than the TTL
        threads = []
        real_refresh = stale._refresh
        monkeypatch.setattr(stale, "_refresh", lambda client: (threads.append(1), real_refresh(client)))
        assert not stale.any_of([f"tag:{tag}"], client=prefect)  # goes on with the old list ...
        _until(lambda: stale.any_of([f"tag:{tag}"], client=prefect))  # ... until the background read lands
        assert threads == [1], "one background read for the stale list, not one per call"
    finally:
        prefect.delete_concurrency_limit_by_tag(tag)

    fresh = _TagLimits()
    fresh.seed([f"tag:{tag}"], read_at=time.time())  # within the TTL: trusted, no read
    assert fresh.any_of([f"tag:{tag}"], client=prefect)


def test_a_failed_background_read_keeps_the_list_and_says_so(caplog):
    class Unreachable:
        def read_global_concurrency_limits(self, **_: object) -> list:
            raise ConnectionError("server gone")

    limits = _TagLimits()
    limits.seed(["tag:kept"], read_at=time.time() - TAG_LIMITS_TTL - 5)
    with caplog.at_level("WARNING", logger=job_task_runner._logger.name):
        assert limits.any_of(["tag:kept"], client=Unreachable())
        _until(lambda: not limits._refreshing)
    assert limits.any_of(["tag:kept"], client=Unreachable())  # kept, and trusted for another TTL
    assert not limits._refreshing
    assert "kept the last list" in caplog.text and "server gone" in caplog.text
