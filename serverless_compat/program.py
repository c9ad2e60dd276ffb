"""The functions a program calls from inside a job: arguments, result, status.

They follow Qiskit Serverless's program contract, so a program behaves the same under qsflow and
under Qiskit Serverless: ``get_arguments`` reads the JSON file named by ``ARGUMENTS_PATH``,
``save_result`` writes the file named by ``RESULTS_PATH``, ``update_status`` sets the job's
detailed status (a named Prefect ``Running`` state of the job's flow run).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from serverless_compat import serialization

logger = logging.getLogger("qiskit_serverless")


def is_running_in_serverless() -> bool:
    """True inside a job run by qsflow (or by Qiskit Serverless)."""
    return "ENV_JOB_ID_GATEWAY" in os.environ


def is_trial() -> bool:
    return os.getenv("ENV_ACCESS_TRIAL") == "True"


def get_arguments() -> dict[str, Any]:
    """The arguments the job was run with, Qiskit objects decoded; ``{}`` when there are none."""
    path = os.environ.get("ARGUMENTS_PATH")
    candidates = [Path(path)] if path else []
    candidates.append(Path("arguments.serverless"))  # the seed era's file, in the working directory
    for candidate in candidates:
        if candidate.is_file():
            text = candidate.read_text()
            return serialization.loads(text) if text.strip() else {}
    return {}


def save_result(result: Any) -> bool:
    """Save the job's result (a JSON-encodable value, usually a dict); True when saved."""
    try:
        text = serialization.dumps(result if result is not None else {})
    except TypeError as exc:
        logger.warning("Object passed is not json serializable: %s", exc)
        return False
    path = os.environ.get("RESULTS_PATH")
    if not path:
        # Outside a job: the stdout marker Qiskit Serverless's local clients read.
        print(f"\nSaved Result:{text}:End Saved Result\n", flush=True)
        return False
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=target.parent, delete=False, suffix=".partial") as handle:
        handle.write(text)
    os.replace(handle.name, target)
    return True


def _api_headers() -> dict[str, str]:
    """The job's Prefect API credentials, from the environment (the program does not load Prefect's settings)."""
    from deployments.api_auth import basic_auth_header

    if os.environ.get("PREFECT_API_KEY"):
        return {"Authorization": f"Bearer {os.environ['PREFECT_API_KEY']}"}
    if os.environ.get("PREFECT_API_AUTH_STRING"):
        return basic_auth_header(os.environ["PREFECT_API_AUTH_STRING"])
    return {}


def update_status(status: str) -> bool:
    """Set the job's detailed status, e.g. ``update_status(Job.MAPPING)`` → ``RUNNING: MAPPING``.

    Returns False outside a job, or when the job is no longer running (stopped, finished).
    """
    from flows.status import running_state_name

    name = running_state_name(status)
    job_id = os.environ.get("QSFLOW_JOB_ID")
    api = os.environ.get("QSFLOW_HOST") or os.environ.get("PREFECT_API_URL")
    if not job_id or not api:
        logger.warning("update_status(%r) ignored: not running inside a qsflow job.", status)
        return False
    from flows.status_events import http_client, post_status_soon

    response = http_client().post(
        f"{api.rstrip('/')}/flow_runs/{job_id}/set_state",
        json={"state": {"type": "RUNNING", "name": name}, "force": False},
        headers=_api_headers(), timeout=30,
    )
    response.raise_for_status()
    accepted = response.json().get("status") == "ACCEPT"
    if accepted:
        # The status is set; its event goes out from a background thread, in order, before the program exits.
        post_status_soon(api, _api_headers(), job_id, os.environ.get("QSFLOW_FUNCTION", ""), name)
    return accepted
