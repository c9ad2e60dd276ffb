"""``Target``: what one distributed task asks of the Ray cluster, in Qiskit Serverless's terms.

The keys are Qiskit Serverless's (``cpu``, ``gpu``, ``qpu``, ``mem``, ``resources``, ``env_vars``, ``pip``); this
module maps them onto Ray's task options, onto Prefect task-run tags, and checks them against the cluster so that
a request no node can ever satisfy fails at once instead of waiting forever.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional, Union

# Set to 1 on an autoscaling cluster whose nodes may grow to fit requests larger than any node today.
ALLOW_UNSATISFIABLE_ENV = "QSFLOW_RAY_ALLOW_UNSATISFIABLE"


class UnsatisfiableTargetError(ValueError):
    """No node of the Ray cluster can ever give a task the resources its target asks for."""


@dataclass(frozen=True)
class Target:
    """Resources of one distributed task.

    ``cpu``/``gpu`` may be fractional (``cpu=0.5`` packs two tasks per core); ``mem`` is in bytes (None: no
    memory reservation); ``resources`` are custom Ray resources; ``env_vars`` and ``pip`` become the task's Ray
    runtime environment. ``qpu`` is accepted for compatibility and not scheduled on.
    """

    cpu: float = 1
    gpu: float = 0
    qpu: int = 0
    mem: Optional[int] = None
    resources: Optional[dict[str, float]] = None
    env_vars: Optional[dict[str, Any]] = None
    pip: Optional[list[str]] = field(default=None)

    def __post_init__(self) -> None:
        for name in ("cpu", "gpu", "qpu"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Target {name}={value!r} must be a number >= 0.")
        if self.mem is not None and (not isinstance(self.mem, int) or self.mem < 0):
            raise ValueError(f"Target mem={self.mem!r} must be a whole number of bytes, e.g. 2 * 1024**3 for 2 GiB.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Target":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown target keys {unknown}; use any of {sorted(known)}.")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def ray_options(self) -> dict[str, Any]:
        """The ``ray.remote`` options this target stands for."""
        options: dict[str, Any] = {"num_cpus": self.cpu, "num_gpus": self.gpu}
        if self.mem:
            options["memory"] = self.mem
        if self.resources:
            options["resources"] = dict(self.resources)
        runtime_env: dict[str, Any] = {}
        if self.pip:
            runtime_env["pip"] = list(self.pip)
        if self.env_vars:
            runtime_env["env_vars"] = {str(k): str(v) for k, v in self.env_vars.items()}
        if runtime_env:
            options["runtime_env"] = runtime_env
        return options

    def tags(self) -> list[str]:
        """Prefect task-run tags naming the resources, e.g. ``["distributed", "cpu:0.5", "gpu:0"]``."""
        tags = ["distributed", f"cpu:{self.cpu:g}", f"gpu:{self.gpu:g}"]
        if self.mem:
            tags.append(f"mem:{self.mem}")
        for name, amount in sorted((self.resources or {}).items()):
            tags.append(f"resource:{name}={amount:g}")
        if self.pip:
            tags.append("pip:" + ",".join(self.pip))
        return tags

    def requirements(self) -> dict[str, float]:
        """The schedulable amounts, in Ray's resource names (``CPU``, ``GPU``, ``memory``, custom)."""
        needed: dict[str, float] = {"CPU": float(self.cpu), "GPU": float(self.gpu)}
        if self.mem:
            needed["memory"] = float(self.mem)
        needed.update({k: float(v) for k, v in (self.resources or {}).items()})
        return {k: v for k, v in needed.items() if v > 0}


TargetLike = Union[Target, Mapping[str, Any], None]


def as_target(target: TargetLike) -> Target:
    """A ``Target`` from a Target, a dict of its keys, or None (one CPU)."""
    if target is None:
        return Target()
    if isinstance(target, Target):
        return target
    if isinstance(target, Mapping):
        return Target.from_dict(target)
    raise TypeError(f"target must be a dict or a Target, not {type(target).__name__}.")


def _describe(amounts: Mapping[str, float]) -> str:
    shown = []
    for name, amount in sorted(amounts.items()):
        if name.startswith("node:") or name == "object_store_memory":
            continue
        shown.append(f"{name}={amount:.0f}" if name == "memory" else f"{name}={amount:g}")
    return ", ".join(shown) or "nothing"


def check_satisfiable(target: Target, nodes: list[Mapping[str, float]]) -> None:
    """Raise ``UnsatisfiableTargetError`` unless some node's total resources cover the target.

    ``nodes`` holds each alive node's total resources (``ray.nodes()[i]["Resources"]``).
    """
    if os.environ.get(ALLOW_UNSATISFIABLE_ENV) == "1":
        return
    needed = target.requirements()
    for node in nodes:
        if all(node.get(name, 0.0) >= amount for name, amount in needed.items()):
            return
    largest = max(nodes, key=lambda n: (n.get("CPU", 0.0), n.get("GPU", 0.0)), default={})
    raise UnsatisfiableTargetError(
        f"distribute_task target {{{_describe(needed)}}} can never run on this Ray cluster: no node has that much "
        f"({len(nodes)} node(s); the largest has {_describe(largest)}). Lower the target, or connect to a larger "
        f"cluster with QSFLOW_RAY_ADDRESS=ray://HOST:10001 (on an autoscaling cluster set "
        f"{ALLOW_UNSATISFIABLE_ENV}=1 to let such tasks wait for new nodes)."
    )
