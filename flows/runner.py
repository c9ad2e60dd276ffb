"""The runner flow: one flow run of it is one job of an uploaded program.

Every program's deployment points here. The runner fetches the program's archive from the store,
unpacks it into a fresh directory, prepares its Python environment (INITIALIZING), then runs the
entrypoint in a child process (RUNNING) with Qiskit Serverless's program contract in place, every
generation's at once (``flows.program_contract``, ``flows.job_gateway``): ``ARGUMENTS_PATH`` and the
older places hold the arguments, ``save_result`` writes ``RESULTS_PATH`` (or reaches it through the
job's gateway endpoint or the stdout marker), and ``import qiskit_serverless`` resolves to
``serverless_compat`` unless the function pins a real release. The program's output becomes the
flow run's logs; its saved result goes to the store under ``jobs/<job id>/result.json``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import tarfile
from collections import deque
from pathlib import Path
from typing import Any, Optional

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.logging.handlers import APILogHandler
from prefect.logging.loggers import PrefectLogAdapter
from prefect.states import Running

from flows import status, status_events
from blocks import prefetched
from deployments.access import ibm_credentials_env
from deployments.settings import unwritten_result_storage
from tasks.ray_block import job_ray_address
from flows.data_mounts import job_data
from flows.job_outputs import PROGRAM_LOGGER, cancel_runtime_jobs, publish, record_paths, route_line
from flows.environments import ALIAS_DIR, environment_info, python_for
from flows import job_gateway, program_contract
from deployments import program_zygote

QSFLOW_ROOT = Path(__file__).resolve().parent.parent
# Children of Prefect's flow-run logger reach the API; job.logs() shows the program's and the
# runner's lines and no engine chatter; job.provider_logs() the provider logger's.
RUNNER_LOGGER = "prefect.flow_runs.qsflow"
JOB_LOGGERS = (PROGRAM_LOGGER, RUNNER_LOGGER)
_TAIL_LINES = 200
# A job's flow run carries both tags: the client adds them, the runner adds them to runs Prefect
# created itself (schedules, triggers, the UI's "Run"), so client.jobs() lists every job.
JOB_TAG = "qsflow-job"
USER_TAG_PREFIX = "qsflow-user:"


class ProgramFailed(RuntimeError):
    """The uploaded program exited with an error; the message holds the end of its traceback."""


def set_job_state(flow_run_id: Any, name: str, program: Optional[str] = None) -> bool:
    """Propose ``Running(name=name)`` for the flow run; False if Prefect refused (e.g. cancelling).

    Once accepted, the change is emitted as a ``qsflow.job.status`` event of ``program``.
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        result = client.set_flow_run_state(flow_run_id, Running(name=name))
    accepted = result.status.value == "ACCEPT"
    if accepted and program is not None:
        status_events.emit_status(flow_run_id, program, status.to_job_status("RUNNING", name))
    return accepted


def _unpack(archive: bytes, target: Path) -> None:
    import io

    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        # The "data" filter refuses absolute paths, '..', links leading outside and device files.
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
            return
        # Pythons without extraction filters (before 3.10.12 / 3.11.4, e.g. Debian 12's 3.11.2): the same refusals.
        for member in tar.getmembers():
            _refuse_unsafe(member, target)
        tar.extractall(target)


def _refuse_unsafe(member: tarfile.TarInfo, target: Path) -> None:
    """Raise unless ``member`` stays inside ``target``: no absolute or '..' path, no link out, no device file."""
    root = target.resolve()
    where = (root / member.name).resolve()
    unsafe = member.name.startswith("/") or not where.is_relative_to(root)
    if member.issym():
        unsafe = unsafe or not (where.parent / member.linkname).resolve().is_relative_to(root)
    elif member.islnk():
        unsafe = unsafe or not (root / member.linkname).resolve().is_relative_to(root)
    elif not (member.isfile() or member.isdir()):
        unsafe = True
    if unsafe:
        raise tarfile.TarError(f"The program archive holds {member.name!r}, which would land outside the program's "
                               "directory or is not a plain file; upload the function again from its working_dir.")


def _program_env(spec_env: dict[str, str], job_id: str, job_dir: Path, python: str,
                 ray_address: str) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env.update(spec_env)
    api_url = PREFECT_API_URL.value() or ""
    # qsflow's own interpreter finds the shim first; a dependency environment lists it last in its
    # .pth (flows/environments.py), so a pinned qiskit-serverless there is the one imported.
    pythonpath = [str(ALIAS_DIR), str(QSFLOW_ROOT)] if python == sys.executable else []
    if env.get("PYTHONPATH"):
        pythonpath.append(env["PYTHONPATH"])
    env.update(
        PYTHONPATH=os.pathsep.join(pythonpath),
        PYTHONUNBUFFERED="1",
        QSFLOW_JOB_ID=job_id,
        QSFLOW_HOST=api_url,
        PREFECT_API_URL=api_url,
        ENV_JOB_ID_GATEWAY=job_id,
        ARGUMENTS_PATH=str(job_dir / "arguments.json"),
        RESULTS_PATH=str(job_dir / "results.json"),
    )
    # Distributed tasks and plain ray.init() in the program use the shared cluster (docs/distribute.md).
    from deployments.ray_cluster import driver_env

    env.update(RAY_ADDRESS=ray_address, QSFLOW_RAY_ADDRESS=ray_address, **driver_env(ray_address))
    return env


def job_logger(name: str) -> PrefectLogAdapter:
    """A logger whose records go to the current flow run's logs under ``name``."""
    return PrefectLogAdapter(logging.getLogger(name), extra=get_run_logger().extra)


def _run_child(command: list[str], cwd: Path, env: dict[str, str], provider_function: bool,
               mount_setup: Optional[list[str]] = None) -> tuple[int, list[str]]:
    """Run the program (forked by the worker's program zygote when it can be), streaming its merged stdout/stderr
    into the job's (and provider's) logs."""
    loggers: dict[str, PrefectLogAdapter] = {}
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    marker = program_contract.ResultMarker(Path(env["RESULTS_PATH"]))  # releases <= 0.32 without a gateway

    def log(line: str) -> None:
        tail.append(line)
        name, text = route_line(line, provider_function)
        if name not in loggers:
            loggers[name] = job_logger(name)
        loggers[name].info(text)

    process = program_zygote.start(command, cwd, env, mount_setup)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            for kept in marker.feed(line.rstrip("\n")):
                log(kept)
        for kept in marker.flush():
            log(kept)
        return process.wait(), list(tail)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _claim(flow_run: Any, program: str) -> None:
    """A run Prefect created (no job tag: a schedule, a trigger, the UI) had no QUEUED event yet: emit it,
    dated to the run's creation; and give it the job and user tags, so it is one of its user's jobs."""
    from prefect.client.orchestration import get_client

    tags = list(flow_run.tags or [])
    if JOB_TAG in tags:
        return
    status_events.emit_status(flow_run.id, program, status.QUEUED, occurred=flow_run.created)
    if not any(tag.startswith(USER_TAG_PREFIX) for tag in tags):
        tags.append(f"{USER_TAG_PREFIX}{job_user(flow_run)}")
    flow_run.tags = [*tags, JOB_TAG]
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, tags=flow_run.tags)


# job id -> the store its runner loaded: the job's completion/failure hook runs in the same process and reuses it
# (a load is two API reads: the block and the filesystem block inside it).
_stores: dict[str, Any] = {}


def job_store(job_id: Any) -> Any:
    """The store the runner of ``job_id`` loaded in this process (once), else the configured one."""
    from blocks.storage import load_store

    store = _stores.pop(str(job_id), None)
    return store if store is not None else load_store()


def job_user(flow_run: Any) -> str:
    """The user a job runs for: its ``qsflow-user:<name>`` tag, else the ``owner`` its schedule or
    trigger gave it, else the local user."""
    from deployments.access import LOCAL_USER

    for tag in flow_run.tags or []:
        if tag.startswith(USER_TAG_PREFIX):
            return tag.removeprefix(USER_TAG_PREFIX)
    return (flow_run.parameters or {}).get("owner") or LOCAL_USER


def _failure_text(returncode: int, tail: list[str]) -> str:
    start = max((i for i, line in enumerate(tail) if line.startswith("Traceback")), default=None)
    detail = "\n".join(tail[start:]) if start is not None else "\n".join(tail[-20:])
    reason = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    return f"The program failed ({reason}).\n{detail}".rstrip()


def _blocks_read(user: str) -> list[tuple[Any, str]]:
    """The saved blocks a job's runner reads at its start: the store, the Ray cluster's address, the user's IBM
    Quantum credentials (the last two usually not saved)."""
    from prefect.blocks.system import Secret

    from blocks.storage import QsflowStore
    from deployments.access import ibm_credentials_block
    from deployments.settings import STORAGE_BLOCK
    from tasks.ray_block import BLOCK_NAME, RayClusterConfig

    return [(QsflowStore, STORAGE_BLOCK), (RayClusterConfig, BLOCK_NAME), (Secret, ibm_credentials_block(user))]


@flow(name="qsflow-runner", persist_result=False, result_storage=unwritten_result_storage(), validate_parameters=True,
      **status_events.FINAL_HOOKS)
def run_program(program: str, version: int, arguments: Optional[dict[str, Any]] = None,
                owner: Optional[str] = None) -> None:
    """Run version ``version`` of the uploaded program ``program`` with JSON-encoded ``arguments``.

    ``owner`` names the user a run created by Prefect (a schedule, a trigger) is for; the client's
    jobs carry their user as a tag instead, which wins.
    """
    from blocks.storage import load_store
    from deployments import arguments_schema
    from deployments.programs import read_spec
    from deployments.settings import home

    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    job_id = str(context.flow_run.id)
    _claim(context.flow_run, program)
    if context.flow_run.state_name == status.INITIALIZING:  # the engine's Running was named so (warm worker)
        status_events.emit_status(job_id, program, status.INITIALIZING)
    else:
        set_job_state(job_id, status.INITIALIZING, program)

    user = job_user(context.flow_run)
    with prefetched.blocks(_blocks_read(user)):  # one API request for the three
        store = _stores[job_id] = load_store()
        ray_address = job_ray_address()
        credentials = ibm_credentials_env(user)  # for get_runtime_service(); never logged
    spec = read_spec(store, program, version)
    refusal = arguments_schema.refusal(spec.arguments_schema, arguments or {})
    if refusal is not None:  # a run created around the client (Prefect UI or API) with bad arguments
        raise ValueError(refusal["message"])
    job_dir = home() / "jobs" / job_id
    work_dir = job_dir / "work"
    shutil.rmtree(job_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    try:
        _unpack(store.read_bytes(f"{spec.store_dir}/{spec.version}/program.tar.gz"), work_dir)
        python = python_for(spec.dependencies, job_logger(RUNNER_LOGGER).info)
        env = _program_env(spec.env_vars, job_id, job_dir, python, ray_address)
        env.update(QSFLOW_USER=user, QSFLOW_FUNCTION=spec.full_title, **record_paths(job_dir))
        env.update(credentials)
        arguments_text = program_contract.encode_arguments(arguments, environment_info(python).get("qpy_version"))

        if not set_job_state(job_id, status.RUNNING, program):
            job_logger(RUNNER_LOGGER).warning("The job was stopped before its program started.")
            return
        from tasks.task_runs import recording

        runner_log = job_logger(RUNNER_LOGGER).info
        try:
            with job_data(store, user, spec.full_title, job_dir, runner_log) as data, \
                    program_contract.arguments_offered(
                        arguments_text, job_id, arguments_path=Path(env["ARGUMENTS_PATH"]), work_dir=work_dir,
                        data_dir=data.data_dir, log=runner_log) as arguments_env, \
                    job_gateway.serve(job_id, Path(env["RESULTS_PATH"]),
                                      lambda sub: set_job_state(job_id, status.running_state_name(sub), program)) as gateway:
                env.update(data.env())
                env.update(arguments_env)
                env.update(gateway.env(env))
                with recording(job_dir, env, job_id):  # the program's distributed tasks become task runs
                    returncode, tail = _run_child([python, spec.entrypoint], work_dir, env,
                                                  provider_function=spec.provider is not None,
                                                  mount_setup=data.mount_setup())
        except BaseException:
            # Stopped (Prefect cancelled the flow run) or crashed: the QPU work must stop too.
            cancel_runtime_jobs(env, runner_log)
            raise
        publish(store, job_id, spec.full_title, env, returncode, tail)
        if returncode != 0:
            raise ProgramFailed(_failure_text(returncode, tail))
        results = Path(env["RESULTS_PATH"])
        if results.exists():
            store.write_bytes(f"jobs/{job_id}/result.json", results.read_bytes())
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)
        # Send every log line before the engine reports the final state: once a job is DONE or
        # ERROR, job.logs() is complete.
        APILogHandler().flush()
