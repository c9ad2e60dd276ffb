"""Shared test setup: one qsflow home and one embedded Prefect server for the whole session.

The session runs with ``QSFLOW_HOME`` pointing at a fresh temporary directory, so the embedded
server (started by the first ``ServerlessClient()``) is the tests' own; it is stopped at the end.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

PROGRAMS = Path(__file__).parent / "programs"
_HOME = Path(tempfile.mkdtemp(prefix="qsflow-test-home-"))


def pytest_configure(config: pytest.Config) -> None:
    os.environ["QSFLOW_HOME"] = str(_HOME)
    os.environ.pop("QSFLOW_HOST", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    from deployments import server

    server.stop()
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def qsflow_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def client():
    """A client of the session's embedded server (started on first use, stopped at session end)."""
    from serverless_compat import ServerlessClient

    return ServerlessClient()


@pytest.fixture
def prefect(client):
    """A sync Prefect client of the session's server."""
    from deployments.connection import prefect_api

    with prefect_api(client.host) as api:
        yield api


def make_tar(path: Path, payload: bytes = b"hello", compressed: bool = False) -> Path:
    """A tar (gzip-compressed if asked) holding ``payload.txt``."""
    with tarfile.open(path, "w:gz" if compressed else "w") as tar:
        info = tarfile.TarInfo("payload.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


SAMPLE_KINDS = ["tar", "tar.gz", "h5", "txt"]


def make_sample(kind: str, directory: Path) -> Path:
    """A small valid data file of ``kind`` (one of SAMPLE_KINDS) in ``directory``."""
    if kind == "tar":
        return make_tar(directory / "plain.tar", b"plain")
    if kind == "tar.gz":
        return make_tar(directory / "packed.tar.gz", b"packed", compressed=True)
    if kind == "h5":
        return make_h5(directory / "values.h5")
    path = directory / "notes.txt"
    path.write_text("some notes\n")
    return path


def bell() -> "Any":
    """A measured two-qubit Bell circuit."""
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return circuit


def make_h5(path: Path, size: int = 10) -> Path:
    """An HDF5 file holding ``values`` = 0..size-1."""
    import h5py
    import numpy as np

    with h5py.File(path, "w") as handle:
        handle["values"] = np.arange(size)
    return path


# The distributed-task tests' cluster: two CPUs and two units of a custom resource.
RAY_HEAD_ENV = {"QSFLOW_RAY_NUM_CPUS": "2", "QSFLOW_RAY_RESOURCES": '{"qsflow_widget": 2}'}


@contextlib.contextmanager
def local_ray_head(test_module: str) -> Iterator[dict[str, Any]]:
    """A fresh local head with RAY_HEAD_ENV's capacity, this process connected to it (functions of
    ``test_module`` shipped by value); the head is stopped and the environment restored at the end."""
    import sys

    from deployments import ray_cluster
    from tasks import ray_connection

    saved = {key: os.environ.get(key) for key in RAY_HEAD_ENV}
    os.environ.update(RAY_HEAD_ENV)
    ray_cluster.stop()  # a head started earlier in the session may have other capacity
    ray_cluster.ensure_local_head()
    ray = ray_connection.connect()
    ray.cloudpickle.register_pickle_by_value(sys.modules[test_module])
    try:
        yield ray_cluster.local_head_status()
    finally:
        ray.shutdown()
        ray_connection.reset()
        ray_cluster.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


STATUS_EVENT_DEADLINE = 60


def flow_run_events(prefect, name: str, job_ids: list[str]) -> list:
    """The events ``name`` about the flow runs ``job_ids``, oldest first, every page. The filter is built per call:
    its ``occurred.until`` defaults to the moment it is built, so a filter kept across polls never returns an event
    emitted after that."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOrder, EventResourceFilter

    event_filter = EventFilter(event=EventNameFilter(name=[name]),
                               resource=EventResourceFilter(id=[f"prefect.flow-run.{j}" for j in job_ids]),
                               order=EventOrder.ASC)
    page = prefect.read_events(event_filter, limit=50)
    events = list(page.events)
    while page.next_page:
        page = prefect.read_events_page(page.next_page)
        events += page.events
    return events


def job_status_events(prefect, job_id: str, until: str, deadline: float = STATUS_EVENT_DEADLINE) -> list:
    """The job's ``qsflow.job.status`` events, oldest first, once the one with status ``until`` is recorded
    (polled for up to ``deadline`` seconds)."""
    give_up = time.monotonic() + deadline
    while True:
        events = flow_run_events(prefect, "qsflow.job.status", [job_id])
        if any(e.resource["qsflow.status"] == until for e in events):
            return events
        assert time.monotonic() < give_up, [e.resource["qsflow.status"] for e in events]
        time.sleep(0.5)
