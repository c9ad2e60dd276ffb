"""``distribute_task`` and its helpers: run a function as a Ray task with a resource target.

Calling a decorated function submits it to the shared Ray cluster with the target's options and returns the
task's Ray ``ObjectRef`` at once (so ``ray.get``/``ray.wait``/``ray.cancel`` work on it too); ``get`` resolves
refs and re-raises a task's exception as its original type; ``put`` stores an object in Ray's object store;
``get_refs_by_status`` splits refs into finished and pending. Inside a job each call is also recorded as a
Prefect task run of the job's flow run, tagged with its resources (see :mod:`tasks.task_events`).
"""

from __future__ import annotations

import functools
import itertools
import threading
from typing import Any, Callable, Generic, Optional, Sequence, TypeVar, Union, overload

from tasks import ray_connection
from tasks.target import Target, TargetLike, as_target, check_satisfiable
from tasks.task_events import event_log

R = TypeVar("R")


class DistributedTask(Generic[R]):
    """A function that runs as a Ray task with ``target``'s resources each time it is called."""

    def __init__(self, fn: Callable[..., R], target: Target) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.target = target
        self.key = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
        self._remote: Any = None
        self._lock = threading.Lock()
        self._calls = itertools.count(1)
        self._checked = False

    def __reduce__(self) -> tuple:
        # Ray ships functions that call other distributed tasks; rebuild the wrapper on the other side.
        return (DistributedTask, (self.fn, self.target))

    def _remote_function(self) -> Any:
        if self._remote is None:
            with self._lock:
                if self._remote is None:
                    ray = ray_connection.connect()
                    self._remote = ray.remote(**self.target.ray_options())(self.fn).options(name=self.fn.__name__)
        return self._remote

    def _check(self) -> None:
        if self._checked:
            return
        try:
            check_satisfiable(self.target, ray_connection.node_capacities())
        except ValueError:
            # The cluster may have grown since its capacity was read: check once more against fresh numbers.
            check_satisfiable(self.target, ray_connection.node_capacities(refresh=True))
        self._checked = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        remote = self._remote_function()
        self._check()
        ref = remote.remote(*args, **kwargs)
        log = event_log()
        if log is not None:
            run_id = log.submitted(f"{self.fn.__name__}-{next(self._calls)}", self.key, self.target.tags())
            log.watch(run_id, ref)
        return ref

    def __repr__(self) -> str:
        return f"<distributed task {self.key} target={self.target}>"


def distribute_task(target: TargetLike = None) -> Callable[[Callable[..., R]], DistributedTask[R]]:
    """Decorator: calls of the function run as Ray tasks with ``target`` (a dict or Target; default 1 CPU).

    ``@distribute_task(target={"cpu": 0.5, "mem": 2 * 1024**3})``; calling the function returns a reference at
    once, to pass to ``get``. A target no node of the cluster can hold raises ``UnsatisfiableTargetError`` at the
    first call.
    """
    resolved = as_target(target)

    def decorator(fn: Callable[..., R]) -> DistributedTask[R]:
        if not callable(fn):
            raise TypeError("distribute_task(...) decorates a function: use @distribute_task(target={...}).")
        return DistributedTask(fn, resolved)

    return decorator


def _raise_original(error: BaseException) -> None:
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        raise cause.with_traceback(cause.__traceback__) from error
    raise error


@overload
def get(object_refs: Sequence[Any], *, timeout: Optional[float] = None) -> list[Any]: ...
@overload
def get(object_refs: Any, *, timeout: Optional[float] = None) -> Any: ...


def get(object_refs: Union[Any, Sequence[Any]], *, timeout: Optional[float] = None) -> Any:
    """The value behind a ref, or a list of values for a list of refs (blocking up to ``timeout`` s).

    An exception raised inside the task is raised here with its original type and message.
    """
    ray = ray_connection.connect()
    refs = list(object_refs) if isinstance(object_refs, (list, tuple)) else object_refs
    try:
        return ray.get(refs, timeout=timeout)
    except ray.exceptions.RayTaskError as error:
        _raise_original(error)


def put(value: Any, **kwargs: Any) -> Any:
    """Store ``value`` in Ray's object store once; the returned ref can be passed to distributed tasks."""
    ray = ray_connection.connect()
    return ray.put(value, **kwargs)


def get_refs_by_status(object_refs: Sequence[Any], *, timeout: Optional[float] = None) -> tuple[list[Any], list[Any]]:
    """``(finished, pending)``: every ref that has finished, and the rest, in the given order.

    When none has finished yet it waits (up to ``timeout`` s; None = until one finishes), so a
    ``while pending: finished, pending = get_refs_by_status(pending)`` loop does not spin.
    """
    refs = list(object_refs)
    if not refs:
        return [], []
    ray = ray_connection.connect()
    ray.wait(refs, num_returns=1, timeout=timeout, fetch_local=False)
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
    done = set(ready)
    return [r for r in refs if r in done], [r for r in refs if r not in done]
