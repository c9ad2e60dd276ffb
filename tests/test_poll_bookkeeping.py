"""The embedded server records a work pool's polls once per ``poll_bookkeeping.DELAY_S`` (deployments.poll_bookkeeping),
on the session's real server: a poll's queue is marked polled and READY a little later, and polls in between
schedule nothing more."""

from __future__ import annotations

import time
import uuid

from deployments import poll_bookkeeping


def test_a_pools_polls_are_recorded_once_a_little_later(prefect) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate

    name = f"poll-marks-{uuid.uuid4().hex[:8]}"  # a pool no worker serves
    prefect.create_work_pool(WorkPoolCreate(name=name, type="process"))
    try:
        [queue] = prefect.read_work_queues(work_pool_name=name)
        assert queue.last_polled is None
        started = time.monotonic()
        for _ in range(5):
            prefect.get_scheduled_flow_runs_for_work_pool(name)
        if time.monotonic() - started < poll_bookkeeping.DELAY_S - 0.5:  # not yet: the record is scheduled later
            assert prefect.read_work_queues(work_pool_name=name)[0].last_polled is None
        deadline = time.monotonic() + poll_bookkeeping.DELAY_S + 20
        while (queue := prefect.read_work_queues(work_pool_name=name)[0]).last_polled is None:
            assert time.monotonic() < deadline, "the pool's polls were never recorded"
            time.sleep(0.2)
        assert queue.status.value == "READY"
        first = queue.last_polled
        # the five polls were recorded once: nothing more is written after that
        time.sleep(poll_bookkeeping.DELAY_S + 1)
        assert prefect.read_work_queues(work_pool_name=name)[0].last_polled == first
    finally:
        prefect.delete_work_pool(name)


def test_only_the_two_poll_records_are_delayed_and_a_second_one_adds_nothing() -> None:
    """On a real (in-memory) docket, as the server's."""
    import asyncio
    import datetime

    from docket import Docket
    from docket.execution import Disposition

    poll_bookkeeping.install()
    poll_bookkeeping.install()  # idempotent

    async def mark_work_queues_ready(**_: object) -> None:
        pass

    async def unrelated(**_: object) -> None:
        pass

    async def schedule() -> list:
        async with Docket(name=f"poll-marks-{uuid.uuid4().hex[:6]}", url="memory://") as docket:
            key = "mark_work_queues_ready:work_pool:p"
            return [await docket.add(mark_work_queues_ready, key=key)(),
                    await docket.add(mark_work_queues_ready, key=key)(),
                    await docket.add(unrelated, key="other:p")()]

    before = datetime.datetime.now(datetime.timezone.utc)
    first, second, other = asyncio.run(schedule())
    assert first.disposition == Disposition.SCHEDULED
    assert first.when >= before + datetime.timedelta(seconds=poll_bookkeeping.DELAY_S)
    assert second.disposition == Disposition.ALREADY_SCHEDULED
    assert other.disposition == Disposition.SCHEDULED and other.when < before + datetime.timedelta(seconds=1)
