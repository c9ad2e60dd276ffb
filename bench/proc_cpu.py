"""CPU time of processes from ``/proc`` (Linux): less sensitive than wall time to a shared, busy machine."""

from __future__ import annotations

import os
from typing import Iterable, Optional

from deployments.processes import descendants, stat_fields

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of ``pid`` (with ``children``: plus its reaped children's); 0 if it is gone."""
    fields = stat_fields(pid)
    if not fields:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def tree_cpu(pids: Iterable[Optional[int]]) -> float:
    """CPU of the given processes and all their live descendants, each with the children it has reaped (finished
    flow runs and programs: e.g. the warm worker's forkserver reaps the runs it forked)."""
    return sum(cpu_seconds(each, children=True) for pid in pids if pid for each in (pid, *descendants(pid)))
