"""``distribute_task`` and its helpers: run a function as a distributed task with a resource target.

Two engines run the calls (docs/distribute.md). Inside a job the default, ``prefect-ray``, makes each call a Prefect
task run by prefect-ray's ``RayTaskRunner`` under ``remote_options`` built from the target, a task run of the job's
flow run (:mod:`tasks.prefect_ray_engine`); the call returns the Ray ``ObjectRef`` of its value at once. The
``direct`` engine (``@distribute_task(engine="direct")`` or ``QSFLOW_TASK_ENGINE=direct``; also every call outside
a job) submits the function straight to Ray with the target's options and returns its Ray ``ObjectRef``; inside a
job the runner records each such call as a task run from outside (:mod:`tasks.task_events`). ``get`` resolves refs and
re-raises a task's exception as its original type; ``put`` stores an object in Ray's object store;
``get_refs_by_status`` splits refs into finished and pending.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import threading
from typing import Any, Callable, Generic, Optional, Sequence, TypeVar, Union, overload

from tasks import circuit_transport, qiskit_threads, ray_connection
from tasks.target import Target, TargetLike, as_target, check_satisfiable
from tasks.task_events import event_log

R = TypeVar("R")

ENGINE_ENV = "QSFLOW_TASK_ENGINE"
DIRECT, PREFECT_RAY = "direct", "prefect-ray"
ENGINES = (DIRECT, PREFECT_RAY)


def check_engine(engine: Optional[str], source: str = "engine") -> Optional[str]:
    """``engine`` if it names an engine (or is None/empty: not chosen here); else a ValueError naming the valid ones."""
    if engine and engine not in ENGINES:
        raise ValueError(f"Unknown distribute_task {source} {engine!r}; valid engines: "
                         + ", ".join(repr(e) for e in ENGINES) + ".")
    return engine or None


def selected_engine(explicit: Optional[str] = None) -> str:
    """The engine for a call: the decorator's ``engine=``, else ``QSFLOW_TASK_ENGINE``, else ``prefect-ray``."""
    return explicit or check_engine(os.environ.get(ENGINE_ENV), ENGINE_ENV) or PREFECT_RAY


class DistributedTask(Generic[R]):
    """A function that runs as a Ray task with ``target``'s resources each time it is called."""

    def __init__(self, fn: Callable[..., R], target: Target, engine: Optional[str] = None,
                 cache: bool = False, retries: Optional[int] = None) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.target = target
        self.engine = check_engine(engine)
        self.cache = bool(cache)
        self.retries = check_retries(retries)
        self._prefect_task: Any = None
        self.key = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
        self._remote: Any = None
        self._lock = threading.Lock()
        self._calls = itertools.count(1)
        self._checked = False

    def __reduce__(self) -> tuple:
        # Ray ships functions that call other distributed tasks; rebuild the wrapper on the other side.
        return (DistributedTask, (self.fn, self.target, self.engine, self.cache, self.retries))

    def ray_options(self, retry_exceptions: bool = True) -> dict[str, Any]:
        """The target's Ray options, plus ``max_retries`` (a lost worker) and, with ``retry_exceptions``, Ray's
        retry of a raised exception, when ``retries`` was given (None: Ray's defaults, 3 and none)."""
        options = self.target.ray_options()
        if self.retries is not None:
            options["max_retries"] = self.retries
            if retry_exceptions:
                options["retry_exceptions"] = True
        return options

    def _remote_function(self) -> Any:
        if self._remote is None:
            with self._lock:
                if self._remote is None:
                    ray = ray_connection.connect()
                    fn = qiskit_threads.sized_call(self.fn)  # Qiskit's threads within the task's CPUs
                    self._remote = ray.remote(**self.ray_options())(fn).options(name=self.fn.__name__)
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
        # Connects first: in a job, Ray then starts the job's first workers while this process loads Prefect.
        self._check()
        circuit_transport.register_if_loaded()  # the arguments' circuits as QPY
        if selected_engine(self.engine) == PREFECT_RAY and os.environ.get(ray_connection.JOB_ID_ENV):
            engine = _prefect_ray_engine()  # outside a job: the direct engine (no flow run to attach to)
            if engine is not None:
                if self._prefect_task is None:
                    self._prefect_task = engine.prefect_task(self)
                return engine.submit(self, self._prefect_task, args, kwargs)
        remote = self._remote_function()
        ref = remote.remote(*args, **kwargs)
        log = event_log()
        if log is not None:
            run_id = log.submitted(f"{self.fn.__name__}-{next(self._calls)}", self.key, self.target.tags())
            log.watch(run_id, ref)
        return ref

    def __repr__(self) -> str:
        engine = f" engine={self.engine}" if self.engine else ""
        cache = " cache=True" if self.cache else ""
        retries = f" retries={self.retries}" if self.retries is not None else ""
        return f"<distributed task {self.key} target={self.target}{engine}{cache}{retries}>"


_engine_unavailable: Optional[str] = None


def _prefect_ray_engine() -> Any:
    """The prefect-ray engine module, or None when Prefect cannot be imported in this program's environment (a
    function's ``dependencies`` may hold versions Prefect cannot run with): its calls then run on the direct
    engine, still recorded as task runs, and the job's log says why, once."""
    global _engine_unavailable
    if _engine_unavailable is None:
        try:
            from tasks import prefect_ray_engine

            return prefect_ray_engine
        except ImportError as error:
            _engine_unavailable = f"{type(error).__name__}: {error}"
            print(f"qsflow: distribute_task runs on the direct engine in this job: Prefect cannot be imported in "
                  f"the program's environment ({_engine_unavailable}). Align the function's dependencies with "
                  f"qsflow's Prefect to get Prefect tasks on RayTaskRunner.", file=sys.stderr, flush=True)
    return None


def check_retries(retries: Optional[int]) -> Optional[int]:
    """``retries`` if it is None or a whole number >= 0; else a ValueError naming the fix."""
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise ValueError(f"distribute_task(retries={retries!r}): give a whole number of retries >= 0, e.g. "
                         "retries=2, or leave it out for Ray's defaults.")
    return retries


def distribute_task(target: TargetLike = None, engine: Optional[str] = None, cache: bool = False,
                    retries: Optional[int] = None) -> Callable[[Callable[..., R]], DistributedTask[R]]:
    """Decorator: calls of the function run as Ray tasks with ``target`` (a dict or Target; default 1 CPU).

    ``@distribute_task(target={"cpu": 0.5, "mem": 2 * 1024**3})``; calling the function returns a reference at
    once, to pass to ``get``. A target no node of the cluster can hold raises ``UnsatisfiableTargetError`` at the
    first call. ``engine`` is ``"direct"`` or ``"prefect-ray"`` (default: ``QSFLOW_TASK_ENGINE``, else prefect-ray).
    ``cache=True`` (prefect-ray engine, in a job): a call with the same arguments as an earlier one of the same
    function source returns the stored value instead of running again, through Prefect's cache policies
    (``INPUTS + TASK_SOURCE``, results kept in the store's ``task-cache/``); default off (``NO_CACHE``).
    ``retries=n`` (qsflow's opt-in; Qiskit Serverless has none): a call that raises, or whose Ray worker dies, runs
    again up to ``n`` times (prefect-ray engine: Prefect's task retries, shown as retrying task runs, and Ray's
    ``max_retries`` for a lost worker; direct engine: Ray's ``max_retries`` with ``retry_exceptions``). Without it,
    Ray's defaults apply, as on Qiskit Serverless: a lost worker is retried 3 times, an exception never.
    """
    resolved = as_target(target)
    check_engine(engine)
    check_retries(retries)
    if not isinstance(cache, bool):
        raise TypeError(f"distribute_task(cache=...) takes True or False, not {cache!r}.")

    def decorator(fn: Callable[..., R]) -> DistributedTask[R]:
        if not callable(fn):
            raise TypeError("distribute_task(...) decorates a function: use @distribute_task(target={...}).")
        return DistributedTask(fn, resolved, engine, cache, retries)

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
