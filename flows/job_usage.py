"""A job's resource usage and result summary, as Prefect artifacts of its flow run.

Usage is the wall time the job spent in each status, computed from the flow run's state history
(what the seed's transpile program measures by hand as ``metadata.resource_usage``): from each
recorded state to the next, summed per status string. The same numbers are ``job.resource_usage()``.
The artifacts carry keys per function (``<function>-resource-usage``, ``<function>-result``), so the
Prefect UI's Artifacts page lists each function's latest and its history.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Iterable, Optional

from flows import status

WALL_TIME = "WALL_TIME"


def usage_from_states(states: Iterable[Any], now: Optional[datetime] = None) -> dict[str, dict[str, float]]:
    """``{status: {"WALL_TIME": seconds}}`` in the order the statuses were entered.

    ``states`` are Prefect states (``type``, ``name``, ``timestamp``). A terminal status takes no
    time; the current status of an unfinished job counts until ``now``.
    """
    ordered = sorted(states, key=lambda s: s.timestamp)
    usage: dict[str, dict[str, float]] = {}
    for index, state in enumerate(ordered):
        job_status = status.to_job_status(state.type, state.name)
        if job_status in status.TERMINAL:
            continue
        end = ordered[index + 1].timestamp if index + 1 < len(ordered) else (now or datetime.now(timezone.utc))
        entry = usage.setdefault(job_status, {WALL_TIME: 0.0})
        entry[WALL_TIME] += max(0.0, (end - state.timestamp).total_seconds())
    return {name: {WALL_TIME: round(entry[WALL_TIME], 3)} for name, entry in usage.items()}


def artifact_key(function: str, kind: str) -> str:
    """An artifact key (lowercase letters, digits, dashes) for ``function``'s ``kind``."""
    slug = re.sub(r"[^a-z0-9]+", "-", function.lower()).strip("-") or "function"
    return f"{slug}-{kind}"


def usage_rows(usage: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    rows = [{"status": name, "wall_time_s": entry[WALL_TIME]} for name, entry in usage.items()]
    rows.append({"status": "TOTAL", "wall_time_s": round(sum(r["wall_time_s"] for r in rows), 3)})
    return rows


def result_summary(job_id: str, function: str, raw: bytes) -> str:
    """Markdown describing a saved result: its size and, per top-level key, the value's kind."""
    lines = [f"# Result of job `{job_id}`", "", f"Function **{function}**, {len(raw)} bytes of JSON.", ""]
    try:
        value = json.loads(raw)
    except ValueError:
        return "\n".join(lines + ["(not valid JSON)"])
    if isinstance(value, dict) and "__type__" not in value:
        lines += ["| key | kind |", "|---|---|"]
        lines += [f"| `{key}` | {_kind(item)} |" for key, item in value.items()]
    else:
        lines.append(f"Value: {_kind(value)}")
    return "\n".join(lines)


def _kind(value: Any) -> str:
    if isinstance(value, dict) and "__type__" in value:
        return str(value["__type__"])
    if isinstance(value, list):
        inner = sorted({_kind(v) for v in value})
        return f"list of {len(value)}" + (f" ({', '.join(inner)})" if inner else "")
    if isinstance(value, dict):
        return f"dict of {len(value)} keys"
    text = json.dumps(value)
    return f"{type(value).__name__} `{text[:40]}{'…' if len(text) > 40 else ''}`"


def create_artifacts(flow_run_id: Any, function: str, result: Optional[bytes] = None) -> None:
    """The usage table (and, given the saved result, its summary) as artifacts of the flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        usage = usage_from_states(client.read_flow_run_states(flow_run_id))
        client.create_artifact(ArtifactCreate(
            key=artifact_key(function, "resource-usage"), type="table",
            data=json.dumps(usage_rows(usage)), flow_run_id=flow_run_id,
            description=f"Wall time per status of job {flow_run_id} ({function}), from its state history.",
        ))
        if result is not None:
            client.create_artifact(ArtifactCreate(
                key=artifact_key(function, "result"), type="markdown",
                data=result_summary(str(flow_run_id), function, result), flow_run_id=flow_run_id,
                description=f"What job {flow_run_id} passed to save_result.",
            ))
