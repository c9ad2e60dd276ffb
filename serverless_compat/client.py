"""Qiskit Serverless's clients, talking to a Prefect server.

``ServerlessClient()`` with no host uses the embedded default: a local Prefect server and worker
that qsflow starts once (see ``deployments.server``) and reuses. ``ServerlessClient(host=URL)``
talks to any Prefect server's API instead (``QSFLOW_HOST`` sets the same from the environment).
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
import warnings
from datetime import datetime
from typing import Any, Iterator, List, Optional, Union
from urllib.parse import urlparse

import httpx
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

from blocks.storage import QsflowStore, load_store
from deployments import access as _access
from deployments import api_auth as _api_auth
from deployments import arguments_schema as _arguments_schema
from deployments import data_files as _files
from deployments import images as _images
from deployments import job_end as _job_end
from deployments import jobs as _jobs
from deployments import programs as _programs
from deployments import server as _server
from deployments.connection import prefect_api
from deployments.settings import api_url, configured_host, home, max_arguments_bytes
from flows import status as _status
from flows.job_outputs import PROVIDER_LOGGER
from flows.runner import job_user
from serverless_compat import serialization
from serverless_compat.errors import QiskitServerlessException, client_error, format_err_msg
from serverless_compat.function import QiskitFunction, RunnableQiskitFunction
from serverless_compat.job import Configuration, Job

FunctionRef = Union[QiskitFunction, str]
IBM_CHANNELS = {"ibm_quantum_platform", "ibm_cloud", "ibm_quantum"}


def _encode_arguments(arguments: Optional[dict[str, Any]]) -> Any:
    """The arguments as the job gets them (JSON); a 400 error for anything that would not arrive intact."""
    with warnings.catch_warnings():
        # Qiskit Runtime's encoder turns a callable into None with a warning: refuse it instead.
        warnings.filterwarnings("error", message=".*is not JSON serializable.*", category=UserWarning)
        try:
            return serialization.to_jsonable(arguments or {})
        except TypeError as exc:
            raise client_error(400, str(exc)) from None
        except UserWarning as exc:
            what = str(exc).split(" is not JSON serializable")[0]
            raise client_error(400, f"{what} cannot be sent to a job (it would arrive as None). Pass data "
                                    "(or the name of what to call), not a function.") from None


def _unreachable(host: str) -> str:
    return (f"No Prefect API answers at {host}. Start the embedded server with `qsflow server start` "
            "(or ServerlessClient() with no host), or start a Prefect server there (`prefect server start`).")


class BaseClient:
    """What every qsflow client shares: a Prefect API URL and the store behind it."""

    def __init__(self, host: Optional[str] = None, token: Optional[str] = None,
                 instance: Optional[str] = None, channel: Optional[str] = None):
        explicit = host or configured_host()
        if explicit:
            self.host = api_url(explicit)
            if not _server.healthy(self.host, timeout=5):
                raise QiskitServerlessException(format_err_msg("AUTH1001", _unreachable(self.host)))
            try:
                self._auth_string = _api_auth.auth_string_for(self.host, token)
            except _api_auth.AuthenticationRequired as exc:
                raise QiskitServerlessException(
                    "Credentials couldn't be verified: " + format_err_msg("AUTH1001", str(exc))) from None
        else:
            self.host = _server.ensure_running()
            self._auth_string = None
        self.token = token
        self.instance = instance
        self.channel = channel

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(host={self.host})>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BaseClient) and (self.host, self.token, self.instance, self.channel) == (
            other.host, other.token, other.instance, other.channel)

    __hash__ = object.__hash__

    # -- plumbing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _api(self) -> Iterator[SyncPrefectClient]:
        try:
            with prefect_api(self.host, self._auth_string) as client:
                yield client
        except (httpx.ConnectError, httpx.ConnectTimeout):
            # Prefect's clients fail at once on a first refused connection; say what to do instead.
            raise client_error(503, _unreachable(self.host)) from None

    def _keep_ibm_credentials(self, token: str, instance: Optional[str], channel: Optional[str]) -> None:
        """Keep an IBM Quantum token in the user's Prefect Secret block, for their jobs only."""
        with self._api():
            _access.save_ibm_credentials(self._principal.user, token, instance, channel)

    @functools.cached_property
    def _store(self) -> QsflowStore:
        local = urlparse(self.host).hostname in {"127.0.0.1", "localhost", "::1"}
        with self._api():
            return load_store(create_default_under=str(home() / "storage") if local else None)

    @staticmethod
    def _full_title(function: FunctionRef, provider: Optional[str] = None) -> str:
        if isinstance(function, QiskitFunction):
            return function.full_title
        return QiskitFunction(title=function, provider=provider).full_title

    def _runnable(self, spec: _programs.ProgramSpec) -> RunnableQiskitFunction:
        return RunnableQiskitFunction(
            self, title=spec.title, provider=spec.provider, entrypoint=spec.entrypoint,
            env_vars=dict(spec.env_vars), dependencies=list(spec.dependencies), image=spec.image,
            description=spec.description, version=str(spec.version), working_dir=None,
            arguments_schema=spec.arguments_schema,
        )

    # -- functions --------------------------------------------------------------------------------
    def upload(self, program: QiskitFunction) -> RunnableQiskitFunction:
        """Store ``program`` as a new version and (re)register its Prefect deployment."""
        try:
            if program.env_vars is not None and not isinstance(program.env_vars, dict):
                raise ValueError(f"env_vars={program.env_vars!r} must be a dict, e.g. env_vars={{'LOG_LEVEL': 'debug'}}.")
            spec = _programs.ProgramSpec(
                title=program.title, provider=program.provider, entrypoint=program.entrypoint or "",
                image=program.image, env_vars=dict(program.env_vars or {}),
                dependencies=_programs.validate_dependencies(program.dependencies),
                description=program.description, arguments_schema=program.arguments_schema,
            )
            with self._api() as client:
                spec = _programs.register(client, self._store, spec, program.working_dir or "./")
        except ValueError as exc:
            raise QiskitServerlessException(format_err_msg(400, str(exc))) from None
        return self._runnable(spec)

    def function(self, title: str, provider: Optional[str] = None) -> RunnableQiskitFunction:
        """The latest version of the function ``title`` (``"provider/title"`` works too)."""
        try:
            return self._runnable(_programs.read_spec(self._store, self._full_title(title, provider)))
        except _programs.ProgramNotFound as exc:
            raise client_error(404, str(exc)) from None

    def function_versions(self, title: str, provider: Optional[str] = None) -> List[RunnableQiskitFunction]:
        """Every uploaded version of the function, oldest first."""
        full = self._full_title(title, provider)
        return [self._runnable(_programs.read_spec(self._store, full, v))
                for v in _programs.list_versions(self._store, full)]

    def functions(self, **kwargs: Any) -> List[RunnableQiskitFunction]:
        """All uploaded functions (latest versions), by title."""
        with self._api() as client:
            deployments = client.read_deployments(
                deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["qsflow"]))
            )
        titles = sorted({d.parameters.get("program") for d in deployments} - {None})
        return [self._runnable(_programs.read_spec(self._store, t)) for t in titles]

    def list(self, **kwargs: Any) -> List[RunnableQiskitFunction]:
        return self.functions(**kwargs)

    def get(self, title: str, provider: Optional[str] = None) -> RunnableQiskitFunction:
        return self.function(title, provider)

    # -- jobs -------------------------------------------------------------------------------------
    def run(self, program: FunctionRef, arguments: Optional[dict[str, Any]] = None,
            config: Optional[Configuration] = None, provider: Optional[str] = None,
            *, parent_job_id: Optional[str] = None) -> Job:
        """Start a job of ``program`` with ``arguments``; returns at once, the job QUEUED.

        ``parent_job_id`` makes it a child job (a Prefect subflow run) of that job.
        """
        full = self._full_title(program, provider)
        encoded = _encode_arguments(arguments)
        if not isinstance(encoded, dict):
            raise client_error(400, "Arguments must be a dict of name -> value, e.g. run(fn, {'x': 1}).")
        # Measured as Prefect's server measures a flow run's parameters (compact JSON).
        parameters = {"program": full, "version": 0, "arguments": encoded}
        size, limit = len(json.dumps(parameters, separators=(",", ":")).encode()), max_arguments_bytes()
        if size > limit:
            raise client_error(400, f"The arguments are {size / 2**20:.2f} MB encoded, over the {limit / 2**20:.3g} MB "
                                    "a job takes. Upload large inputs as data files (client.file_upload) and pass "
                                    "their names, or raise QSFLOW_MAX_ARGUMENTS_MB together with the Prefect "
                                    "server's PREFECT_SERVER_API_MAX_PARAMETER_SIZE.")
        try:
            self._refuse_invalid_arguments(_programs.read_spec(self._store, full), encoded)
            with self._api() as client:
                deployment = _programs.read_deployment(client, full)
                _images.ready_to_run(client, deployment)
                submitting = time.monotonic()
                flow_run = _jobs.submit(client, full, encoded, self._principal.user, parent_job_id, deployment)
            _job_end.created(str(flow_run.id), submitting)
        except _programs.ProgramNotFound as exc:
            raise client_error(404, str(exc)) from None
        except _images.DockerPoolMissing as exc:
            raise client_error(503, str(exc)) from None
        return Job(str(flow_run.id), job_service=self)

    @staticmethod
    def _refuse_invalid_arguments(spec: _programs.ProgramSpec, encoded: dict[str, Any]) -> None:
        refusal = _arguments_schema.refusal(spec.arguments_schema, encoded)
        if refusal is not None:
            raise client_error(400, json.dumps(refusal, default=str))

    def validate_arguments(self, title: str, arguments: Optional[dict[str, Any]] = None,
                           provider: Optional[str] = None) -> dict[str, Any]:
        """Check ``arguments`` against the function's ``arguments_schema`` without running anything.

        Returns ``{"valid": True}``; raises QiskitServerlessException (400) listing every violation.
        """
        full = self._full_title(title, provider)
        encoded = _encode_arguments(arguments)
        try:
            spec = _programs.read_spec(self._store, full)
        except _programs.ProgramNotFound as exc:
            raise client_error(404, str(exc)) from None
        self._refuse_invalid_arguments(spec, encoded)
        return {"valid": True}

    def jobs(self, function: Optional[FunctionRef] = None, limit: int = 10, offset: int = 0,
             status: Optional[str] = None, created_after: Optional[Union[datetime, str]] = None,
             **kwargs: Any) -> List[Job]:
        """Your jobs, newest first: only ``function``'s, in ``status`` (``"DONE"``, ``"RUNNING"`` ...),
        created after ``created_after`` (a datetime or ISO 8601 text) when given."""
        return self._list_jobs(function, limit, offset, status, created_after, user=self._principal.user)

    def _list_jobs(self, function: Optional[FunctionRef], limit: int, offset: int, status: Optional[str],
                   created_after: Optional[Union[datetime, str]], user: Optional[str]) -> List[Job]:
        full = self._full_title(function) if function is not None else None
        if full is not None and not _programs.list_versions(self._store, full):
            raise client_error(404, f"Qiskit Function {full} doesn't exist.")
        if isinstance(created_after, str):
            try:
                created_after = datetime.fromisoformat(created_after)
            except ValueError:
                raise client_error(400, f"created_after={created_after!r} is not an ISO 8601 time, "
                                        "e.g. '2026-01-31T12:00:00+00:00'.") from None
        if created_after is not None and created_after.tzinfo is None:
            created_after = created_after.astimezone()  # a naive time is local time
        try:
            with self._api() as client:
                runs = _jobs.list_jobs(client, full, limit=limit, offset=offset, user=user,
                                       job_status=status, created_after=created_after)
        except ValueError as exc:
            raise client_error(400, str(exc)) from None
        return [Job(str(r.id), job_service=self) for r in runs]

    def get_jobs(self, **kwargs: Any) -> List[Job]:
        return self.jobs(**kwargs)

    def job(self, job_id: str) -> Optional[Job]:
        """The job ``job_id``, or None when there is no such job; 403 for another user's job."""
        with self._api() as client:
            try:
                self._read_job(client, job_id)
            except _jobs.JobNotFound:
                return None
        return Job(str(job_id), job_service=self)

    def _read_job(self, client: SyncPrefectClient, job_id: str, owner_only: bool = False,
                  denied: str = "You don't have access to job [{job_id}]"):
        """The job's flow run, if the caller may see it: its user, or a member of its function's
        provider (``owner_only``: its user alone). Else a 403 error."""
        flow_run = _jobs.read(client, job_id)
        owner = job_user(flow_run)
        function = (flow_run.parameters or {}).get("program", "")
        principal = self._principal
        if owner != principal.user and (owner_only or not principal.can_see_job(owner, function)):
            raise client_error(403, denied.format(job_id=job_id))
        return flow_run

    def _own_job(self, job_id: str, denied: str = "You don't have access to job [{job_id}]") -> None:
        with self._api() as client:
            try:
                self._read_job(client, job_id, owner_only=True, denied=denied)
            except _jobs.JobNotFound as exc:
                raise client_error(404, str(exc)) from None

    def get_job_by_id(self, job_id: str) -> Optional[Job]:
        return self.job(job_id)

    # -- data files -------------------------------------------------------------------------------
    @functools.cached_property
    def _principal(self) -> _access.Principal:
        with self._api():
            try:
                return _access.resolve(self.token)
            except _access.Forbidden as exc:
                raise client_error(403, str(exc)) from None

    def _scope(self, function: Optional[FunctionRef], provider_space: bool) -> _files.Scope:
        full = self._full_title(function) if function is not None else None
        if full is not None and not _programs.list_versions(self._store, full):
            raise client_error(404, f"Qiskit Function {full} doesn't exist.")
        try:
            if provider_space:
                return _files.provider_scope(self._principal, full)
            return _files.user_scope(self._principal, full)
        except _access.Forbidden as exc:
            raise client_error(403, str(exc)) from None
        except ValueError as exc:
            raise QiskitServerlessException(str(exc)) from None

    def _file_call(self, call, *args: Any, **kwargs: Any) -> Any:
        try:
            with self._api():
                return call(self._store, *args, **kwargs)
        except FileNotFoundError as exc:
            raise client_error(404, str(exc)) from None
        except ValueError as exc:
            raise QiskitServerlessException(str(exc)) from None

    def files(self, function: Optional[FunctionRef] = None) -> List[str]:
        """Data files in your space (shared by your own functions; per function for provider ones)."""
        return self._file_call(_files.list_files, self._scope(function, False))

    def file_upload(self, file: str, function: Optional[FunctionRef] = None) -> str:
        """Upload a tar/h5/... file to your data space; returns a message naming the stored file."""
        return self._file_call(_files.upload, self._scope(function, False), file)

    def file_download(self, file: str, function: Optional[FunctionRef] = None,
                      target_name: Optional[str] = None, download_location: str = "./") -> str:
        """Download a data file into ``download_location``; returns the downloaded file's path."""
        return self._file_call(_files.download, self._scope(function, False), file,
                               target_name=target_name, download_location=download_location)

    def file_delete(self, file: str, function: Optional[FunctionRef] = None) -> str:
        return self._file_call(_files.delete, self._scope(function, False), file)

    def provider_files(self, function: FunctionRef) -> List[str]:
        """Data files in the provider space of ``function`` (provider members and its jobs only)."""
        return self._file_call(_files.list_files, self._scope(function, True))

    def provider_file_upload(self, file: str, function: FunctionRef) -> str:
        return self._file_call(_files.upload, self._scope(function, True), file)

    def provider_file_download(self, file: str, function: FunctionRef, target_name: Optional[str] = None,
                               download_location: str = "./") -> str:
        return self._file_call(_files.download, self._scope(function, True), file,
                               target_name=target_name, download_location=download_location)

    def provider_file_delete(self, file: str, function: FunctionRef) -> str:
        return self._file_call(_files.delete, self._scope(function, True), file)

    # -- the job service Job calls back into ------------------------------------------------------
    def status(self, job_id: str) -> str:
        with self._api() as client:
            return _jobs.job_status(self._read_job(client, job_id))

    def wait(self, job_id: str, timeout: Optional[float], poll: float) -> Optional[str]:
        """The job's final status once it ends, or None after ``timeout`` seconds: woken by the server's event
        stream (``deployments.job_end``), polling every ``poll`` seconds only where no stream can be opened."""
        def ended() -> Optional[str]:
            current = self.status(job_id)
            return current if current in _status.TERMINAL else None

        with self._api():
            return _job_end.wait_until(job_id, ended, timeout, poll)

    def stop(self, job_id: str, service: Any = None) -> str:
        self._own_job(job_id)
        with self._api() as client:
            return _jobs.stop(client, job_id)

    def result(self, job_id: str) -> Any:
        self._own_job(job_id)
        raw = _jobs.result_bytes(self._store, job_id)
        return None if raw is None else serialization.loads(raw)

    def logs(self, job_id: str) -> str:
        self._own_job(job_id, denied="You don't have access to read user logs of the job [{job_id}]")
        with self._api() as client:
            return _jobs.logs(client, job_id)

    def _job_function(self, job_id: str) -> str:
        with self._api() as client:
            flow_run = _jobs.read(client, job_id)
        return (flow_run.parameters or {}).get("program", "")

    def provider_logs(self, job_id: str) -> str:
        full = self._job_function(job_id)
        provider, _, title = full.rpartition("/")
        if not provider or not self._principal.can_reach_provider(provider, title):
            raise client_error(403, f"You don't have access to job [{job_id}]")
        with self._api() as client:
            return _jobs.logs(client, job_id, loggers=(PROVIDER_LOGGER,))

    def events(self, job_id: str) -> list[dict[str, Any]]:
        self._own_job(job_id)
        return _jobs.events(self._store, job_id)

    def resource_usage(self, job_id: str) -> dict[str, dict[str, float]]:
        from flows.job_usage import usage_from_states

        with self._api() as client:
            self._read_job(client, job_id)
            return usage_from_states(client.read_flow_run_states(job_id))

    def runtime_jobs(self, job_id: str) -> list[dict[str, Any]]:
        self._own_job(job_id)
        return _jobs.runtime_jobs(self._store, job_id)

    def provider_jobs(self, function: FunctionRef, limit: int = 10, offset: int = 0,
                      status: Optional[str] = None, created_after: Optional[Union[datetime, str]] = None,
                      **kwargs: Any) -> List[Job]:
        """Jobs of a provider function, by every user (provider members only), newest first."""
        full = self._full_title(function)
        provider, _, title = full.rpartition("/")
        if not provider:
            raise QiskitServerlessException("`function` doesn't have a provider.")
        if not self._principal.can_reach_provider(provider, title):
            raise client_error(403, f"You don't have access to the jobs of provider {provider}.")
        return self._list_jobs(full, limit, offset, status, created_after, user=None)

    def error_message(self, job_id: str) -> str:
        with self._api() as client:
            state = self._read_job(client, job_id, owner_only=True).state
        message = (state.message if state else None) or "The job failed."
        return message.removeprefix("Flow run encountered an exception: ")


class ServerlessClient(BaseClient):
    """A client for qsflow: the embedded default, or the Prefect server at ``host``."""

    def __init__(self, host: Optional[str] = None, version: Optional[str] = None,
                 token: Optional[str] = None, instance: Optional[str] = None,
                 channel: Optional[str] = None, name: Optional[str] = None, **kwargs: Any):
        self.version = version
        self.name = name
        super().__init__(host=host, token=token, instance=instance, channel=channel)
        if token and (instance or channel in IBM_CHANNELS):
            # Qiskit Serverless's form, ServerlessClient(token=<IBM Quantum API key>, instance=<CRN>):
            # the jobs get the token, from a Secret block, as QISKIT_IBM_TOKEN.
            self._keep_ibm_credentials(token, instance, channel)


class LocalClient(ServerlessClient):
    """Qiskit Serverless 0.22's local client: here, the embedded default on this machine."""

    def __init__(self) -> None:
        super().__init__(host=None)


class IBMServerlessClient(ServerlessClient):
    """Qiskit Serverless's IBM Quantum client, on qsflow.

    It talks to qsflow (the embedded default, ``QSFLOW_HOST``, or ``host=``), not to IBM's
    gateway. A ``token`` is your IBM Quantum API key: qsflow keeps it in a Prefect Secret block
    and gives it to your jobs as ``QISKIT_IBM_TOKEN`` so ``get_runtime_service()`` reaches IBM.
    """

    def __init__(self, token: Optional[str] = None, name: Optional[str] = None,
                 instance: Optional[str] = None, channel: Optional[str] = None, *,
                 host: Optional[str] = None):
        super().__init__(host=host, instance=instance, channel=channel, name=name)
        self._ibm_token = token
        if token:
            self._keep_ibm_credentials(token, instance, channel)

    def usage(self) -> dict[str, Any]:
        """Your IBM Quantum usage (QiskitRuntimeService.usage()); needs an IBM Quantum account."""
        from qiskit_ibm_runtime import QiskitRuntimeService

        try:
            service = QiskitRuntimeService(channel=self.channel or "ibm_quantum_platform",
                                           token=self._ibm_token, instance=self.instance, name=self.name)
            return service.usage()
        except Exception as exc:
            raise QiskitServerlessException(
                f"Failed to retrieve usage information for instance '{self.instance}': {exc}. usage() "
                "reports IBM Quantum usage: pass IBMServerlessClient(token=..., instance=...) or save "
                "an account with QiskitRuntimeService.save_account()."
            ) from None
