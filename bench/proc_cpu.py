"""CPU time of processes from ``/proc`` (Linux): less sensitive than wall time to a shared, busy machine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of ``pid`` (with ``children``: plus its reaped children's); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def tree_cpu(pids: Iterable[Optional[int]]) -> float:
    """CPU of the given processes and all their live descendants, each with the children it has reaped (finished
    flow runs and programs: e.g. the warm worker's forkserver reaps the runs it forked)."""
    tree = _children()
    total, todo = 0.0, [pid for pid in pids if pid]
    while todo:
        pid = todo.pop()
        total += cpu_seconds(pid, children=True)
        todo.extend(tree.get(pid, []))
    return total
