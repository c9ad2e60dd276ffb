"""qsflow's own settings: where its home is and which Prefect API the client talks to."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

WORK_POOL = "qsflow"
# Retries of a Prefect API call the server answers 503 ("retry later"; a busy SQLite database answers so):
# Prefect's default is 5 (~1 minute of backoff), qsflow's processes use at least this many (~8 minutes at worst).
API_RETRIES = 8
STORAGE_BLOCK = "qsflow-storage"


def home() -> Path:
    """qsflow's home directory (``QSFLOW_HOME``, default ``~/.qsflow``), created on first use."""
    path = Path(os.environ.get("QSFLOW_HOME") or Path.home() / ".qsflow").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def home_digest() -> str:
    """A short name for this qsflow home, for what must live directly under ``/tmp`` (Unix socket paths stay
    under 108 bytes)."""
    import hashlib

    return hashlib.sha256(str(home()).encode()).hexdigest()[:10]


def configured_host() -> Optional[str]:
    """The Prefect API URL set for qsflow (``QSFLOW_HOST``), or None for the embedded default."""
    return os.environ.get("QSFLOW_HOST") or None


def api_url(host: str) -> str:
    """Normalise a host given to the client into a Prefect API URL ending in ``/api``."""
    host = host.rstrip("/")
    if not host.startswith(("http://", "https://")):
        raise ValueError(
            f"host={host!r} is not a URL. Pass the Prefect API URL, e.g. "
            "ServerlessClient(host='http://127.0.0.1:4200/api'), or no host for the embedded default."
        )
    return host if host.endswith("/api") else f"{host}/api"


def _megabytes(names: tuple[str, ...], default: float) -> int:
    """A size limit in bytes from the first of ``names`` set in the environment (in MB), else ``default`` MB."""
    for name in names:
        value = os.environ.get(name)
        if value:
            try:
                megabytes = float(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not a number of megabytes, e.g. {name}=50.") from None
            return int(megabytes * 1024 * 1024)
    return int(default * 1024 * 1024)


def max_upload_bytes() -> int:
    """Largest working_dir an upload packs (its files' total size), as Qiskit Serverless's client:
    ``QSFLOW_MAX_UPLOAD_MB``, else Qiskit Serverless's ``MAX_ARTIFACT_FILE_SIZE_MB_OVERRIDE``, else 50 MB."""
    return _megabytes(("QSFLOW_MAX_UPLOAD_MB", "MAX_ARTIFACT_FILE_SIZE_MB_OVERRIDE"), 50)


def max_arguments_bytes() -> int:
    """Largest arguments a job takes, JSON-encoded with the rest of its flow-run parameters:
    ``QSFLOW_MAX_ARGUMENTS_MB``, else 0.5 MB, the Prefect server's own limit on a flow run's parameters
    (``PREFECT_SERVER_API_MAX_PARAMETER_SIZE``, 524288 bytes; raise both together)."""
    return _megabytes(("QSFLOW_MAX_ARGUMENTS_MB",), 0.5)


def max_running_jobs() -> int:
    """How many jobs the embedded default runs at once (``QSFLOW_MAX_RUNNING_JOBS``, default twice the cores, at
    least 2); more wait in QUEUED, as on Qiskit Serverless's gateway. Its SQLite database stays responsive
    under bursts of submissions (measured: 50 jobs at once with no limit left one ERROR on an API 503)."""
    value = os.environ.get("QSFLOW_MAX_RUNNING_JOBS")
    if value:
        try:
            limit = int(value)
        except ValueError:
            limit = 0
        if limit < 1:
            raise ValueError(f"QSFLOW_MAX_RUNNING_JOBS={value!r} must be a whole number of jobs >= 1, e.g. 4.")
        return limit
    return max(2, 2 * (os.cpu_count() or 1))


def unwritten_result_storage() -> Path:
    """Result storage for Prefect flows and tasks whose results qsflow never persists: Prefect's local default path,
    never written. Prefect's engines ask the server for its default result storage at every run of a flow or task
    that names none (one API request each time); a path needs no request to resolve, unlike an unsaved block."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path)
