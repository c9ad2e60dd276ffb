"""qsflow's own settings: where its home is and which Prefect API the client talks to."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

WORK_POOL = "qsflow"
STORAGE_BLOCK = "qsflow-storage"


def home() -> Path:
    """qsflow's home directory (``QSFLOW_HOME``, default ``~/.qsflow``), created on first use."""
    path = Path(os.environ.get("QSFLOW_HOME") or Path.home() / ".qsflow").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


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
