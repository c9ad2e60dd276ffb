"""Qiskit's threads inside a distributed task: no more than the task's CPUs.

Qiskit's Rust passes (Sabre layout and routing among them) run on every core of the node by default, whatever
the task reserved; with ``cpu=1`` tasks filling a node of N cores that is N threads per core. Ray caps OpenMP the
same way for the same reason (``OMP_NUM_THREADS`` = the task's whole CPUs). Qiskit has one switch for it, the one
it sets in its own ``parallel_map`` workers: ``QISKIT_IN_PARALLEL=TRUE`` runs its Rust code on one thread, and
keeps ``parallel_map`` from starting process pools, both read at each call. So a distributed task with fewer than
two CPUs assigned (``cpu=1``, ``cpu=0.5``, ``cpu=0``) runs with it set, and the worker's environment is put back
after the call; a task with two or more keeps Qiskit's default (all threads: Qiskit has no count to give).

Measured (32-circuit fan-out, FakeSherbrooke, level 2, ``cpu=1`` tasks of the default engine, this 2-core
machine): the median round 6-9% shorter than the same tasks with ``QISKIT_IN_PARALLEL=FALSE`` in their
``env_vars``, in two runs of 11 and 15 alternated rounds; raw Ray tasks, 2-8% in four runs.

Left as it is: a worker whose environment sets ``QISKIT_IN_PARALLEL``, ``QISKIT_FORCE_THREADS`` or
``RAYON_NUM_THREADS`` itself (a target's ``env_vars``, the cluster's environment): that is the user's choice.
Plain ``ray.remote`` functions of a program are Ray's and run as Ray runs them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from typing import Any, Callable, Iterator, TypeVar

SINGLE_THREAD_VARIABLE = "QISKIT_IN_PARALLEL"
USER_CHOICES = ("QISKIT_IN_PARALLEL", "QISKIT_FORCE_THREADS", "RAYON_NUM_THREADS")

R = TypeVar("R")


def _assigned_cpus() -> float:
    """The CPUs Ray assigned to the task this worker runs (inf outside a Ray worker: nothing to size to)."""
    import ray

    context = ray.get_runtime_context()
    if context.worker.mode != ray._private.worker.WORKER_MODE:
        return float("inf")
    return float(context.get_assigned_resources().get("CPU", 0.0))


@contextlib.contextmanager
def sized_to_task() -> Iterator[None]:
    """Within this block, Qiskit runs single-threaded when the current Ray task has fewer than two CPUs."""
    if any(name in os.environ for name in USER_CHOICES) or _assigned_cpus() >= 2:
        yield
        return
    os.environ[SINGLE_THREAD_VARIABLE] = "TRUE"
    try:
        yield
    finally:
        os.environ.pop(SINGLE_THREAD_VARIABLE, None)


def sized_call(fn: Callable[..., R]) -> Callable[..., R]:
    """``fn`` called inside :func:`sized_to_task` (the direct engine's Ray function)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            with sized_to_task():
                return await fn(*args, **kwargs)

        return call_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> R:
        with sized_to_task():
            return fn(*args, **kwargs)

    return call
