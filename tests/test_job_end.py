"""Waiting for a job's end is woken by the server's event stream, not by reading the status over and over
(deployments.job_end), on the session's real embedded server; where no stream can be opened it polls."""

from __future__ import annotations

import http.server
import threading

import pytest

from conftest import PROGRAMS
from deployments import job_end
from flows import status
from serverless_compat import QiskitFunction


@pytest.fixture(scope="module")
def naps(client):
    return client.upload(QiskitFunction(title="job-end-naps", entrypoint="naps.py",
                                        working_dir=str(PROGRAMS / "naps")))


def _counted(client, job_id: str) -> tuple[list[str], "callable"]:
    reads: list[str] = []

    def ended():
        current = client.status(job_id)
        reads.append(current)
        return current if current in status.TERMINAL else None

    return reads, ended


def test_a_wait_is_woken_by_the_end_not_by_polling(client, naps):
    job = naps.run(seconds=3)
    reads, ended = _counted(client, job.job_id)
    with client._api():
        # Status read every 0.05 s were it polling (some 60 times), at most every 120 s on the stream.
        ended_as = job_end.wait_until(job.job_id, ended, timeout=300, poll=0.05, check_every=120)
    assert ended_as == "DONE"
    assert len(reads) <= 3, reads  # once at the start, once when woken (and maybe one more wake-up)
    assert job.result() == {"slept": 3}


def test_a_job_this_client_ran_is_waited_for_without_reading_its_status(client, naps):
    """The stream was open before the job was created, so it will carry the end; the end's event names the state,
    hence the status. Also for a wait that begins after the end."""
    assert naps.run(seconds=0).wait(timeout=300) == "DONE"  # the stream is open from here on
    job = naps.run(seconds=1)
    reads, ended = _counted(client, job.job_id)
    with client._api():
        assert job_end.wait_until(job.job_id, ended, timeout=300, poll=0.05, check_every=120) == "DONE"
        assert job_end.wait_until(job.job_id, ended, timeout=300, poll=0.05, check_every=120) == "DONE"
    assert reads == []
    assert job.status() == "DONE" and job.result() == {"slept": 1}


def test_a_stopped_job_wakes_its_waiter(client, naps):
    job = naps.run(seconds=120)
    reads, ended = _counted(client, job.job_id)
    threading.Timer(2.0, job.stop).start()
    with client._api():
        ended_as = job_end.wait_until(job.job_id, ended, timeout=300, poll=0.05, check_every=120)
    assert ended_as == "CANCELED"
    assert len(reads) <= 4, reads


def test_job_wait_and_result_use_it(naps):
    job = naps.run(seconds=1)
    assert job.wait(timeout=300) == "DONE"
    assert job.result(cadence=120) == {"slept": 1}


class _NotPrefect(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_error(404)

    def log_message(self, *args) -> None:
        pass


def test_without_an_event_stream_a_wait_polls_at_its_interval():
    """A server that opens no event stream (here: not a Prefect server at all): the waiter reads the status every
    ``poll`` seconds, as waits did before."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotPrefect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    reads = []

    def ended():
        reads.append(1)
        return "DONE" if len(reads) == 5 else None

    try:
        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{server.server_address[1]}/api"}):
            assert job_end.wait_until("a-job", ended, timeout=120, poll=0.2, check_every=120) == "DONE"
            assert job_end._watcher().dead.is_set()
    finally:
        server.shutdown()
        server.server_close()
    assert len(reads) == 5
