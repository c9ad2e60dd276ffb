"""Waiting for a job to end without asking its status over and over: Prefect's event stream says when.

``Job.wait()`` and ``Job.result()`` used to read the job's flow run five times a second until it ended (~10 ms of
the Prefect server's CPU per read here: a client waiting ten minutes cost the server 30 s of CPU). Instead, each
client process keeps one subscription to the server's event stream (``/events/out``, Prefect's
``PrefectEventSubscriber``) for the state events of flow runs entering a final state type (Completed, Failed,
Crashed, Cancelled, and Cancelling, which reads as CANCELED) and wakes whoever waits for that run.

The event names the state the run entered, so a waiter it wakes takes the job's final status from it (through the
one status map) instead of reading the flow run. Nor does a wait read the status first when this process created
the job (:func:`created`) after its stream had opened: the stream carries the end, and ends seen before the wait
began are kept (``KEEP_ENDS`` per stream). Two reads fewer per job (~8 ms of the server's CPU each here).

An event can be missed (published before the subscription was open and not yet stored for its backfill, or the
stream lost): waiters still read the status every ``check_every`` seconds, and where no stream can be opened
they poll at their own interval, as before.
"""

from __future__ import annotations

import collections
import contextvars
import threading
import time
from typing import Callable, Optional

from flows import status

# The state types whose event may end a wait: those that read as DONE, ERROR or CANCELED in the one status map
# (Cancelling too: it reads as CANCELED).
FINAL_STATE_TYPES = tuple(t for job_status in sorted(status.TERMINAL) for t in status.state_filter(job_status)[0])
# With a stream open, the status is still read this often (seconds): a missed event costs at most this much.
CHECK_EVERY = 5.0
# How long a first wait gives the stream to open before it reads the status (seconds).
CONNECT_WAIT = 2.0
# How many final statuses seen on the stream each watcher keeps, for waits that begin after the end.
KEEP_ENDS = 4096


class _Watcher:
    """One subscription of this process to one server's stream, in a thread of its own; wakes waiters by run id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, list[threading.Event]] = {}
        self._ends: collections.OrderedDict[str, str] = collections.OrderedDict()  # run id -> final status, newest last
        self.connected = threading.Event()
        self.connected_at = float("inf")  # monotonic time the subscription opened
        self.dead = threading.Event()
        self.settled = threading.Event()  # connected or dead, whichever came first
        self.died_at = 0.0
        # Runs in the caller's Prefect settings (API URL and credentials) though in another thread.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._main,), name="qsflow-job-ends", daemon=True)
        self._thread.start()

    def register(self, job_id: str) -> threading.Event:
        woken = threading.Event()
        with self._lock:
            self._waiters.setdefault(job_id, []).append(woken)
        return woken

    def unregister(self, job_id: str, woken: threading.Event) -> None:
        with self._lock:
            waiting = self._waiters.get(job_id, [])
            if woken in waiting:
                waiting.remove(woken)
            if not waiting:
                self._waiters.pop(job_id, None)

    def end_of(self, job_id: str) -> Optional[str]:
        """The final status the stream said ``job_id`` entered, if it did while this watcher was open."""
        with self._lock:
            return self._ends.get(job_id)

    def _wake(self, job_id: str, job_status: Optional[str] = None) -> None:
        with self._lock:
            if job_status is not None:
                _keep_newest(self._ends, job_id, job_status)
            for woken in self._waiters.get(job_id, []):
                woken.set()

    def _main(self) -> None:
        import asyncio

        try:
            asyncio.run(self._follow())
        except Exception:  # noqa: BLE001 - no stream: waiters poll; a later wait opens a new one
            pass
        finally:
            self.died_at = time.monotonic()
            self.dead.set()
            self.settled.set()
            with self._lock:
                for waiting in self._waiters.values():
                    for woken in waiting:
                        woken.set()  # let them notice and poll

    async def _follow(self) -> None:
        from prefect.events.clients import PrefectEventSubscriber
        from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
        from prefect.events.schemas.events import ResourceSpecification

        final = EventFilter(
            event=EventNameFilter(prefix=["prefect.flow-run."]),
            resource=EventResourceFilter(labels=ResourceSpecification({"prefect.state-type": list(FINAL_STATE_TYPES)})),
        )
        async with PrefectEventSubscriber(filter=final, reconnection_attempts=3) as events:
            self.connected_at = time.monotonic()
            self.connected.set()
            self.settled.set()
            async for event in events:
                state_type = event.resource.get("prefect.state-type")
                ended_as = None
                if state_type in FINAL_STATE_TYPES:
                    ended_as = status.to_job_status(state_type, event.resource.get("prefect.state-name"))
                self._wake(event.resource.id.removeprefix("prefect.flow-run."), ended_as)


_watchers: dict[str, _Watcher] = {}
_watchers_lock = threading.Lock()
# After a stream was lost or could not be opened, waiters poll this long before a new one is tried (seconds).
RETRY_AFTER = 30.0


def _watcher() -> _Watcher:
    """This process's watcher for the server the current Prefect settings point at: a new one if there is none, or
    if the last one died over RETRY_AFTER seconds ago."""
    from prefect.settings import PREFECT_API_URL

    key = str(PREFECT_API_URL.value())
    with _watchers_lock:
        watcher = _watchers.get(key)
        if watcher is None or (watcher.dead.is_set() and time.monotonic() - watcher.died_at > RETRY_AFTER):
            watcher = _watchers[key] = _Watcher()
    return watcher


_created: collections.OrderedDict[str, float] = collections.OrderedDict()  # run id -> monotonic time, newest last
_created_lock = threading.Lock()


def created(job_id: str, since: float) -> None:
    """This process created the job (its flow run) after ``since`` (a ``time.monotonic()``)."""
    with _created_lock:
        _keep_newest(_created, job_id, since)


def wait_until(job_id: str, ended: Callable[[], Optional[str]], timeout: Optional[float], poll: float,
               check_every: float = CHECK_EVERY) -> Optional[str]:
    """The job's final status: the one its final-state event names, else what ``ended()`` (the job's final status,
    or None while it runs) returns, called at the start (unless this process :func:`created` the job while the
    stream was open), at least every ``check_every`` seconds, or every ``poll`` seconds while no event stream is
    open; None after ``timeout`` seconds. Call in the Prefect settings of the job's server.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    watcher = _watcher()
    woken = watcher.register(job_id)
    try:
        watcher.settled.wait(CONNECT_WAIT)  # once open, its backfill holds an end from just before it opened
        with _created_lock:
            since = _created.get(job_id)
        read = not (since is not None and _open_since(watcher, since))
        while True:
            woken.clear()
            job_status = watcher.end_of(job_id)
            if job_status is None and read:
                job_status = ended()
            read = True
            if job_status is not None:
                return job_status
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            streaming = watcher.connected.is_set() and not watcher.dead.is_set()
            interval = check_every if streaming else poll
            woken.wait(interval if left is None else min(interval, left))
            current = _watcher()
            if current is not watcher:  # the stream was lost and a new one is opening
                watcher.unregister(job_id, woken)
                watcher, woken = current, current.register(job_id)
    finally:
        watcher.unregister(job_id, woken)


def _keep_newest(kept: collections.OrderedDict, key: str, value: object) -> None:
    """``kept[key] = value`` as its newest entry, dropping the oldest beyond ``KEEP_ENDS``."""
    kept[key] = value
    kept.move_to_end(key)
    while len(kept) > KEEP_ENDS:
        kept.popitem(last=False)


def _open_since(watcher: _Watcher, moment: float) -> bool:
    return watcher.connected.is_set() and not watcher.dead.is_set() and watcher.connected_at <= moment
