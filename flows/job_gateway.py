"""The two gateway endpoints a job's program calls, served on 127.0.0.1 for the length of one job.

The real ``qiskit-serverless`` package, inside a job (``ENV_JOB_GATEWAY_HOST``,
``ENV_JOB_GATEWAY_TOKEN`` and ``ENV_JOB_ID_GATEWAY`` set), talks to its gateway for two things
(checked in the client at every tag 0.16.3 to 0.37.0):

- ``save_result`` (up to 0.32): ``POST {host}/api/{version}/jobs/{id}/result/``, a form field
  ``result`` holding the JSON text encoded with its QiskitObjectsEncoder;
- ``update_status`` (0.22 on): ``PATCH {host}/api/{version}/jobs/{id}/sub_status/``, a form field
  ``sub_status`` (``MAPPING``, ``OPTIMIZING_HARDWARE``, ``WAITING_QPU``, ``EXECUTING_QPU``,
  ``POST_PROCESSING``);

both with ``Authorization: Bearer <token>`` (plus ``Service-CRN``/``Service-Channel`` headers, not
used here); ``{version}`` is ``ENV_GATEWAY_PROVIDER_VERSION`` or ``v1``. The client only looks at
whether the response is 2xx. Here each job gets its own server on an ephemeral port and its own
random token, good for these two endpoints of this job and nothing else; a result is written to
the job's results file (the one ``RESULTS_PATH`` names), a sub-status becomes the job's state
through the runner's callback. Like the gateway: 400 for a missing or unknown sub-status, 403 when
the job is no longer running.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import socket
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional
from urllib.parse import parse_qs

from flows.status import SUB_STATUSES

MAX_BODY = 512 * 1024 * 1024  # a saved result travels in one request
_ROUTE = re.compile(r"^/api/(?P<version>v\d+)/jobs/(?P<job>[^/]+)/(?P<action>result|sub_status)/?$")
_METHODS = {"result": "POST", "sub_status": "PATCH"}


def write_result(results_path: Path, text: str) -> None:
    """Replace the job's saved result with ``text`` in one step (a reader never sees half of it)."""
    results_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=results_path.parent, delete=False, suffix=".partial") as handle:
        handle.write(text)
    os.replace(handle.name, results_path)


class _Handler(BaseHTTPRequestHandler):
    server: "_JobServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # requests are not part of the job's logs

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        job = self.server.job
        match = _ROUTE.match(self.path.split("?", 1)[0])
        authorization = self.headers.get("Authorization", "")
        if not hmac.compare_digest(authorization.encode(), f"Bearer {job.token}".encode()):
            self._drain()
            return self._reply(401, {"message": "Invalid token for this job."})
        if match is None or match["job"] != job.job_id:
            self._drain()
            return self._reply(404, {"message": "Not found: this token serves only its job's result/ and "
                                                "sub_status/ endpoints."})
        action = match["action"]
        if self.command != _METHODS[action]:
            self._drain()
            return self._reply(405, {"message": f"Use {_METHODS[action]} for {action}/."})
        fields = self._fields()
        if fields is None:
            return
        if action == "result":
            return self._save_result(fields)
        return self._sub_status(fields)

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= MAX_BODY:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _fields(self) -> Optional[dict]:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._reply(411, {"message": "Content-Length is required."})
            return None
        if int(length) > MAX_BODY:
            self.close_connection = True
            self._reply(413, {"message": f"The body is larger than {MAX_BODY} bytes; save a smaller result "
                                         "or write it to a data file."})
            return None
        body = self.rfile.read(int(length)).decode("utf-8", errors="replace")
        if self.headers.get("Content-Type", "").startswith("application/json"):
            try:
                fields = json.loads(body or "{}")
            except ValueError:
                fields = None
            if not isinstance(fields, dict):
                self._reply(400, {"message": "The body is not a JSON object."})
                return None
            return fields
        return {name: values[-1] for name, values in parse_qs(body, keep_blank_values=True).items()}

    def _save_result(self, fields: dict) -> None:
        text = fields.get("result")
        if not isinstance(text, str):
            text = json.dumps(text) if text is not None else None
        try:
            if text is None:
                raise ValueError("missing")
            json.loads(text)
        except ValueError:
            return self._reply(400, {"message": "'result' must be the result encoded as JSON text."})
        write_result(self.server.job.results_path, text)
        return self._reply(200, {"id": self.server.job.job_id, "result": "saved"})

    def _sub_status(self, fields: dict) -> None:
        sub_status = fields.get("sub_status")
        if sub_status not in SUB_STATUSES:
            return self._reply(400, {"message": "'sub_status' not provided or is not valid; pass one of "
                                                f"{', '.join(SUB_STATUSES)}."})
        try:
            accepted = self.server.job.set_sub_status(sub_status)
        except Exception as exc:  # the orchestrator did not answer: say so, the program decides
            return self._reply(503, {"message": f"The job's state could not be set: {exc}"})
        if not accepted:
            return self._reply(403, {"message": "Cannot update 'sub_status' when the job is not running."})
        job = {"id": self.server.job.job_id, "status": "RUNNING", "sub_status": sub_status}
        return self._reply(200, {"job": job})

    do_POST = do_PATCH = do_GET = do_PUT = do_DELETE = _handle


class JobGateway:
    """One job's endpoints: its id, token, results file and how a sub-status reaches its state."""

    def __init__(self, job_id: str, results_path: Path, set_sub_status: Callable[[str], bool]):
        self.job_id = job_id
        self.results_path = results_path
        self.set_sub_status = set_sub_status
        self.token = secrets.token_urlsafe(32)
        self.url = ""

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The variables the real package reads to reach this gateway (added to ``base``, the
        program's environment; a configured HTTP proxy is told to leave 127.0.0.1 alone)."""
        env = {"ENV_JOB_GATEWAY_HOST": self.url, "ENV_JOB_GATEWAY_TOKEN": self.token,
               "ENV_JOB_ID_GATEWAY": self.job_id}
        if any(base.get(name) for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")):
            for name in ("NO_PROXY", "no_proxy"):
                env[name] = ",".join(filter(None, [base.get(name), "127.0.0.1"]))
        return env


class _JobServer(ThreadingHTTPServer):
    daemon_threads = True
    job: JobGateway


@contextlib.contextmanager
def serve(job_id: str, results_path: Path, set_sub_status: Callable[[str], bool]) -> Iterator[JobGateway]:
    """Serve the job's endpoints on 127.0.0.1 (an ephemeral port) until the block ends.

    ``set_sub_status`` gets a ``Job`` constant (``"MAPPING"`` ...) and returns False when the job
    cannot take it (no longer running).
    """
    job = JobGateway(job_id, results_path, set_sub_status)
    server = _JobServer(("127.0.0.1", 0), _Handler)
    server.job = job
    job.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=f"qsflow-gateway-{job_id}", daemon=True)
    thread.start()
    try:
        yield job
    finally:
        _stop(server, thread)


def _stop(server: _JobServer, thread: threading.Thread) -> None:
    """Stop serving now. ``shutdown()`` returns once ``serve_forever`` next looks at its stop flag, which it does
    when its poll ends: up to 50 ms after every job's program. A connection ends the poll at once, so the server
    is poked with empty connections until it has stopped. A poke that comes before the flag is served as an empty
    request (closed without an answer); ``server_close`` drops those left waiting."""
    stopper = threading.Thread(target=server.shutdown, name=f"{thread.name}-stop", daemon=True)
    stopper.start()
    while stopper.is_alive():
        with contextlib.suppress(OSError):
            socket.create_connection(server.server_address[:2], timeout=1.0).close()
        stopper.join(0.005)
    server.server_close()
    thread.join()
