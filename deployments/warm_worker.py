"""qsflow's warm worker (`qsflow worker`): Prefect's process worker, forking runner-flow runs from a warm process.

Prefect's ``ProcessWorker`` starts every flow run in a fresh interpreter, twice over in Prefect 3.9 (a workspace
supervisor that imports Prefect and reads the deployment, which then ``exec``\\ s ``python -m prefect.engine``, which
imports Prefect again and then the flow's module). Measured here, that is 2-4 s of a trivial job's ~4 s
``run()`` -> DONE (bench: ``python -m bench``).

:class:`WarmProcessWorker` is that worker with one change, for runs of qsflow's runner flow
(``flows.runner:run_program``, the entrypoint of every program's deployment): it forks them from a multiprocessing
*forkserver* that imported Prefect's flow engine and ``flows.runner`` once, when the worker started. Each run is
still a process of its own that the worker tracks, cancels (``job.stop()``) and reports on through Prefect's own
executor; Prefect's flow engine runs the flow in it exactly as ``python -m prefect.engine`` would (same state
transitions, hooks, logs). Runs of any other entrypoint go through the stock path. Besides: it polls for new runs
when the server's events say one is scheduled or ended (:meth:`WarmProcessWorker.start`), it does not propose
the informational ``Submitting`` state (:meth:`WarmProcessWorker._propose_submitting_state`), the run's engine names
its ``Running`` state ``INITIALIZING`` (:func:`_running_named_initializing`) and starts no suspension observer
(:func:`_without_suspension_observer`), and it hands each run
the flow, deployment, work queue and work pool its events name, which the run would otherwise read from the API
(:meth:`WarmProcessWorker._related_objects`). It also starts the program zygote that forks its runs' programs
(:func:`start_program_zygote`, :mod:`deployments.program_zygote`).

Started by ``qsflow worker`` (:mod:`deployments.worker`: any Prefect server, Prefect's worker options such as
``--limit``), which is also the embedded default's worker (:mod:`deployments.server`); ``QSFLOW_WARM_WORKER=0``
makes it start Prefect's stock ``prefect worker start`` instead.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import multiprocessing
import os
import sys
import time
from typing import Any, AsyncIterator, Iterator, Optional
from uuid import UUID

import anyio
import anyio.abc
from prefect.runner._flow_run_executor import FlowRunExecutorContext
from prefect.runner._process_manager import ProcessHandle
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from deployments import ray_warm_workers, related_resources

RUNNER_ENTRYPOINT = "flows.runner:run_program"
RELATED_TTL_S = 60.0  # how long the worker reuses a run's flow, deployment, work queue and work pool objects
WAITING_READ_LIMIT = 200  # scheduled runs of the pool read when the event stream (re)opens; more: poll at every end
# The flow-run states (Prefect's state names) of a run waiting for a worker, which the worker polls for at once, and
# the final ones, which free a slot of the pool's concurrency limit
WAITING_STATES = ("Scheduled", "Late", "AwaitingRetry")
ENDED_STATES = ("Completed", "Failed", "Crashed", "Cancelled")
# Imported once by the forkserver; every run forked from it starts with them loaded.
PRELOAD = ["deployments.warm_preload", "deployments.warm_worker"]

_forkserver: Optional[multiprocessing.context.BaseContext] = None
# deployment id -> the deployment read while one run is submitted (WarmProcessWorker._submit_run)
_submission_reads: contextvars.ContextVar[Optional[dict[str, Any]]] = contextvars.ContextVar(
    "qsflow_submission_reads", default=None)
_program_zygote: Optional[Any] = None  # this worker's (deployments.program_zygote)


def forkserver() -> multiprocessing.context.BaseContext:
    """The multiprocessing context whose forkserver holds the preloaded modules (started on first use)."""
    global _forkserver
    if _forkserver is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        _forkserver = context
    return _forkserver


def warm_up() -> None:
    """Start the forkserver now (it imports ``PRELOAD``), so the first job does not wait for it."""
    process = forkserver().Process(target=_noop)
    process.start()
    process.join()


def _noop() -> None:
    pass


def _execute(flow_run: Any, env: dict[str, str], cwd: str, related: Optional[dict[str, Any]] = None) -> None:
    """In the forked process: what ``python -m prefect.engine`` does, with the runner flow already imported, the
    run's ``related`` objects (:meth:`WarmProcessWorker._related_objects`) where Prefect's events code looks, and
    the ``flow_run`` the worker took from its poll instead of a read of it (~5 ms of the server's CPU per job). The
    engine reads it again once its ``Running`` state is set, before the flow starts; until then it uses the run's id,
    name, parameters and retry policy, which the worker's copy has as they are (its state is the one before
    ``Pending``: the engine's proposal of ``Running`` is orchestrated by the server from the run's actual state)."""
    from deployments.warm_preload import RUN_SETTINGS_VARIABLES

    # the first event the run emits (its store's block load) would read them from the API, each on a new connection
    related_resources.seed(related or {})

    same_settings = settings_variables(env) == RUN_SETTINGS_VARIABLES
    os.environ.update(env)
    os.chdir(cwd)
    from prefect._internal.control_listener import configure_from_env
    from prefect.context import SettingsContext, get_settings_context
    from prefect.engine import handle_engine_signals
    from prefect.flow_engine import flow_run_logger, run_flow
    from prefect.settings import Settings

    from flows.runner import run_program

    run_id = flow_run.id
    _heartbeats_without_join()
    _running_named_initializing()
    _without_suspension_observer()
    configure_from_env()
    # Settings read from this run's environment (the forkserver's were read when it started), unless its Prefect
    # settings variables are those the forkserver's settings give (the embedded default's runs, unless a
    # deployment sets some): building them costs ~30 ms of CPU.
    current = get_settings_context()
    with SettingsContext(profile=current.profile, settings=current.settings if same_settings else Settings()):
        with handle_engine_signals(run_id):
            run_flow(run_program, flow_run=flow_run, error_logger=flow_run_logger(flow_run=flow_run))


def settings_variables(environ: Any) -> dict[str, str]:
    """The variables Prefect's settings are read from (``PREFECT_*``; ``PREFECT__*`` are the engine's own)."""
    return {k: v for k, v in environ.items() if k.startswith("PREFECT_") and not k.startswith("PREFECT__")}


def run_settings_variables() -> dict[str, str]:
    """The ``PREFECT_*`` variables a run the worker starts gets when its settings are this process's: the worker
    passes its environment plus its settings written out (``to_environment_variables``: ``False``, ``5.0`` ...)."""
    from prefect.settings import get_current_settings

    variables = settings_variables(os.environ)
    variables.update(get_current_settings().to_environment_variables(exclude_unset=True))
    return variables


def start_program_zygote() -> Optional[Any]:
    """Start the zygote the runs fork their programs from (:mod:`deployments.program_zygote`), with the environment
    a job's program gets (``flows.runner._program_env``) but for the job's own variables, and tell the runs where
    it listens. None when turned off (``QSFLOW_PROGRAM_ZYGOTE=0``)."""
    from deployments import program_zygote
    from deployments.ray_cluster import configured_address, driver_env

    if not program_zygote.enabled():
        return None
    env = {**os.environ, **run_settings_variables(), "PYTHONUNBUFFERED": "1"}
    env.update(driver_env(configured_address() or "127.0.0.1:0"))
    path = program_zygote.socket_path(os.getpid())
    os.environ[program_zygote.SOCKET_ENV] = path
    return program_zygote.launch(path, env)


def _heartbeats_without_join() -> None:
    """Prefect's flow-run heartbeat thread sleeps in 1 s steps and the sync engine joins it when the run ends:
    0.5 s on average added to every job (py-spy). Prefect's async engine does not join it; do the same here (the
    thread checks the stop flag before each heartbeat, so none is sent after the run). Guarded: a Prefect
    without that parameter is left as it is."""
    import functools
    import inspect

    import prefect.flow_engine as engine

    send = getattr(engine, "_send_heartbeats", None)
    if send is not None and "join_on_exit" in inspect.signature(send).parameters:
        engine._send_heartbeats = functools.partial(send, join_on_exit=False)


def _without_suspension_observer() -> None:
    """No suspension observer for the runner flow's run. Prefect's engine starts one for every deployment run: a
    thread with its own event loop and a websocket subscription to the server, plus a read of the flow run, and the
    run waits for it to be ready before it starts and for its thread (which looks every 0.2 s) to stop when it ends.
    It lets a run that is suspended from outside stop at the engine's next checkpoint; the runner has none while the
    program (a subprocess) runs, so at best it turned a finished program into a suspended run. Without it, measured
    here over 4 alternated pairs of 12 trivial jobs: ``run()`` -> DONE p50 473 -> 455 ms, server CPU per job 272 ->
    249 ms. Guarded: a Prefect without that function in its flow engine is left as it is."""
    import prefect.flow_engine as engine

    if callable(getattr(engine, "observe_flow_run_suspension", None)):
        engine.observe_flow_run_suspension = _no_observer


@contextlib.contextmanager
def _no_observer(*args: Any, **kwargs: Any) -> Iterator[None]:
    yield


def _running_named_initializing() -> None:
    """The engine names the run's ``Running`` state ``INITIALIZING``, the status it stands for (:mod:`flows.status`).
    The runner proposed ``Running(name="INITIALIZING")`` right after the engine's unnamed ``Running``: a second state
    write for the same status (~13 ms of the server's CPU, its event and a round trip per job); it now only emits
    the status event when the state already has that name. Only in this process, which runs one runner flow run
    (an engine's retry enters ``Running`` again, and the runner starts over: INITIALIZING again). Guarded: a Prefect
    whose flow engine does not propose its states with ``prefect.states.Running`` is left as it is."""
    import prefect.flow_engine as engine
    from prefect.states import Running

    from flows.status import INITIALIZING

    if getattr(engine, "Running", None) is Running:
        engine.Running = functools.partial(Running, name=INITIALIZING)


class _OneDeploymentReadPerSubmission:
    """The worker's Prefect client while one run is submitted. Prefect's worker reads the run's deployment twice then,
    milliseconds apart (whether it still exists, then for the run's job configuration): the second read is given the
    first one's answer (~4 ms of the server's CPU per job). Anything else goes to the client."""

    def __init__(self, client: Any, reads: dict[str, Any]) -> None:
        self._client = client
        self._reads = reads

    async def read_deployment(self, deployment_id: Any) -> Any:
        key = str(deployment_id)
        if key not in self._reads:
            self._reads[key] = await self._client.read_deployment(deployment_id)
        return self._reads[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class ForkedRunStarter:
    """Prefect's ``ProcessStarter`` protocol: start the run in a process forked from the warm forkserver."""

    def __init__(self, env: dict[str, Optional[str]], cwd: str, control_channel: Any = None,
                 related: Optional[dict[str, Any]] = None) -> None:
        self._env = env
        self._cwd = cwd
        self._control_channel = control_channel
        self._related = related or {}

    async def start(self, flow_run: Any,
                    task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED) -> None:
        from prefect.utilities.processutils import sanitize_subprocess_env

        env = {**os.environ, **{k: v for k, v in self._env.items() if v is not None}}
        env["PREFECT__FLOW_RUN_ID"] = str(flow_run.id)
        env["PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS"] = "false"  # the worker runs those hooks
        registered = False
        if self._control_channel is not None:
            try:  # graceful cancellation through Prefect's control channel, as the stock starters do
                port, token = self._control_channel.register(flow_run.id)
                env["PREFECT__CONTROL_PORT"], env["PREFECT__CONTROL_TOKEN"] = str(port), token
                registered = True
            except RuntimeError:
                pass
        env = {k: v for k, v in sanitize_subprocess_env(env).items() if v is not None}
        process = forkserver().Process(target=_execute, args=(flow_run, env, self._cwd, self._related),
                                       name=f"qsflow-run-{flow_run.id}")
        handed_off = False
        try:
            await anyio.to_thread.run_sync(process.start)  # talks to the forkserver: off the worker's event loop
            task_status.started(ProcessHandle(process))
            handed_off = True
            await anyio.to_thread.run_sync(process.join)
        except BaseException:
            if registered and not handed_off:
                self._control_channel.unregister(flow_run.id)
            raise


class WarmProcessWorker(ProcessWorker):
    """Prefect's process worker; runs of the runner flow start forked from a warm forkserver (module doc).

    It serves the same ``process`` work pools (so it takes over Prefect's registration of that type in this
    process: Prefect warns about that once).
    """

    _read_objects: dict[str, tuple[Any, float]] = {}  # "<kind>.<id>" -> (object, monotonic time it was read)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: set[str] = set()  # ids of runs that may wait for a slot (:meth:`_runs_may_wait`)
        self._waiting_unknown = True  # until the event stream is open and the pool's scheduled runs were read

    async def start(self, *args: Any, **kwargs: Any) -> None:
        """Prefect's worker loops, plus: poll at once whenever a flow run is scheduled or ends (events: an end frees
        a slot of the work pool's concurrency limit as soon as the server records it), and, with a ``limit``,
        whenever one of this worker's runs exits and frees a slot of it, so a job does not wait for the next poll
        (``PREFECT_WORKER_QUERY_SECONDS`` stays the fallback). A freed slot is polled for only while a run may wait
        for it (:meth:`_runs_may_wait`)."""
        self._slot_freed = anyio.Event()
        # Idle Ray workers with Prefect loaded, ready for the next job's first distributed tasks (module doc there).
        self._ray_refiller = ray_warm_workers.Refiller(busy=lambda: self._active_runs > 0).start()
        # One executor context (client, events emitter, control channel, cancellation observer) for all the
        # worker's runs, as Prefect's Runner keeps one: a context per run cost each job a client, two websockets
        # (events in, cancellations out) and a listening socket, on the worker and on the server.
        async with FlowRunExecutorContext() as self._runs_context, anyio.create_task_group() as group:
            group.start_soon(self._poll_on_scheduled_runs)
            if self._limit is not None:
                group.start_soon(self._poll_on_freed_slots)
            try:
                await super().start(*args, **kwargs)
            finally:
                group.cancel_scope.cancel()
                self._ray_refiller.stop()

    async def _poll_on_scheduled_runs(self) -> None:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        # An end is seen here when the server records it, before the run's process has run its final hooks and
        # exited (0.2-0.5 s later): waiting for that left the pool's freed slots empty meanwhile.
        names = [f"prefect.flow-run.{state}" for state in (*WAITING_STATES, *ENDED_STATES)]
        scheduled_or_ended = EventFilter(event=EventNameFilter(name=names))
        while True:
            while self._runs_task_group is None or self._client is None:  # the worker has not started its loops yet
                await anyio.sleep(0.05)
            try:
                async with get_events_subscriber(filter=scheduled_or_ended, reconnect_on_clean_close=True) as events:
                    await self._read_waiting()  # the runs scheduled before the stream opened (or while it was lost)
                    async for event in events:
                        if self._poll_wanted(event):
                            await self.get_and_submit_flow_runs()
            except Exception as error:  # the regular poll still runs; try again shortly
                self._logger.debug("Scheduled-run events unavailable (%s); polling only", error)
            self._waiting_unknown = True
            await anyio.sleep(2)

    def _poll_wanted(self, event: Any) -> bool:
        """Note what a flow run's state ``event`` says of the runs waiting for a slot; whether to poll now."""
        if not self._of_this_pool(event):
            return False
        run_id = event.resource.id.removeprefix("prefect.flow-run.")
        scheduled = event.event.removeprefix("prefect.flow-run.") in WAITING_STATES
        if scheduled:
            self._waiting.add(run_id)
        else:
            self._waiting.discard(run_id)
        if self._runs_task_group is None:  # the worker is stopping
            return False
        if scheduled:  # the server gives no run past the pool's limit; the next end polls
            return not self._pool_filled_here()
        return self._runs_may_wait()  # an end: its freed slot is worth a poll only if a run may wait for it

    def _of_this_pool(self, event: Any) -> bool:
        """Whether the flow run of ``event`` may be one of this worker's pool (its event names no other pool)."""
        pools = [r.get("prefect.resource.name") for r in event.related if r.role == "work-pool"]
        return not pools or self._work_pool_name in pools

    async def _read_waiting(self) -> None:
        """Note the pool's runs waiting in a scheduled state (Scheduled, Late, AwaitingRetry ...), read once the
        event stream is open: later ones arrive as events."""
        from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
                                                    WorkPoolFilter, WorkPoolFilterName)
        from prefect.client.schemas.objects import StateType

        runs = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.SCHEDULED]))),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[self._work_pool_name])),
            limit=WAITING_READ_LIMIT)
        self._waiting.update(str(run.id) for run in runs)
        self._waiting_unknown = len(runs) >= WAITING_READ_LIMIT

    def _runs_may_wait(self) -> bool:
        """Whether a run may be waiting for a free slot: one this worker saw scheduled (its event, or in the pool
        when the event stream opened) and has seen neither taken by its own poll nor ended. A run another worker
        took counts until it ends: never a poll too few. Each poll costs the server ~20 ms of CPU; one after every
        job's end, with nothing waiting, was ~15% of the server's CPU per trivial job here."""
        return self._waiting_unknown or bool(self._waiting)

    async def get_and_submit_flow_runs(self) -> list[Any]:
        taken = await super().get_and_submit_flow_runs()
        self._note_taken(taken)
        return taken

    def _note_taken(self, runs: list[Any]) -> None:
        self._waiting.difference_update(str(run.id) for run in runs)

    def _pool_filled_here(self) -> bool:
        """Whether this worker's own runs alone fill the work pool's concurrency limit (then a poll returns
        nothing: ~23 ms of the server's CPU saved per run scheduled meanwhile, e.g. 16 of 20 jobs submitted at
        once under the embedded default's limit of 4). Other workers' runs are not counted: never a poll too few."""
        limit = getattr(self._work_pool, "concurrency_limit", None)  # as of the worker's last sync with the server
        return limit is not None and self._active_runs >= limit

    def _release_limit_slot(self, flow_run_id: UUID) -> None:
        super()._release_limit_slot(flow_run_id)
        freed = getattr(self, "_slot_freed", None)
        if freed is not None:
            freed.set()

    async def _poll_on_freed_slots(self) -> None:
        while True:
            await self._slot_freed.wait()
            self._slot_freed = anyio.Event()
            if self._runs_task_group is not None and self._runs_may_wait():
                try:
                    await self.get_and_submit_flow_runs()
                except Exception as error:  # the regular poll still runs
                    self._logger.debug("Poll after a run ended failed (%s)", error)

    async def _propose_submitting_state(self, flow_run: Any) -> None:
        """Skip Prefect's ``Pending(name="Submitting")``: the run is already Pending (the worker claimed it), and
        Prefect's worker goes on to start the run whatever that proposal's outcome (a refusal is ignored), so it
        guards nothing here. It cost each job a state write (~18 ms of the server's CPU), its event and a round trip
        before the run starts."""

    async def _read(self, kind: str, obj_id: Any, read: Any) -> Any:
        """``read(obj_id)``, reused for ``RELATED_TTL_S`` seconds (the key is Prefect's related-resource key)."""
        key = f"{kind}.{obj_id}"
        cached = self._read_objects.get(key)
        if cached is None or time.monotonic() - cached[1] > RELATED_TTL_S:
            cached = self._read_objects[key] = (await read(obj_id), time.monotonic())
        return cached[0]

    async def _entrypoint(self, flow_run: Any) -> Optional[str]:
        if flow_run.deployment_id is None:
            return None
        return (await self._read("deployment", flow_run.deployment_id, self.client.read_deployment)).entrypoint

    async def _related_objects(self, flow_run: Any) -> dict[str, Any]:
        """The run's flow, deployment, work queue and work pool, for its process to seed Prefect's related-resource
        cache with (:mod:`deployments.related_resources`). Each is read at most once every ``RELATED_TTL_S`` by this
        worker (the deployment read for the run's entrypoint is reused), so an edited deployment's name or tags reach
        the events a minute later at most; one that cannot be read is left to the run's process to read, as Prefect
        does."""
        pool = getattr(self, "_work_pool", None)  # the worker keeps its pool, re-read at each sync with the server
        pool_name = flow_run.work_pool_name or self._work_pool_name
        related: dict[str, Any] = {}
        if pool is not None and pool.name == pool_name:
            related[f"work-pool.{pool_name}"] = pool
        wanted = [("flow", flow_run.flow_id, self.client.read_flow),
                  ("deployment", flow_run.deployment_id, self.client.read_deployment),
                  ("work-queue", flow_run.work_queue_id, self.client.read_work_queue),
                  ("work-pool", pool_name, self.client.read_work_pool)]
        for kind, obj_id, read in wanted:
            key = f"{kind}.{obj_id}"
            if not obj_id or key in related:
                continue
            try:
                related[key] = await self._read(kind, obj_id, read)
            except Exception:  # gone or unreadable: the run's own read reports it, as it always did
                self._read_objects.pop(key, None)
        return related

    @contextlib.asynccontextmanager
    async def _executor_context(self) -> AsyncIterator[FlowRunExecutorContext]:
        """The worker's shared executor context (:meth:`start`); a run outside ``start`` gets its own."""
        shared = getattr(self, "_runs_context", None)
        if shared is not None:
            yield shared
            return
        async with FlowRunExecutorContext() as context:
            yield context

    _active_runs = 0  # runs between the start of run() and their process's exit

    @property
    def client(self) -> Any:
        client = super().client
        reads = _submission_reads.get()
        return client if reads is None else _OneDeploymentReadPerSubmission(client, reads)

    async def _submit_run(self, flow_run: Any) -> None:
        """Prefect's submission, its deployment read once (:class:`_OneDeploymentReadPerSubmission`)."""
        token = _submission_reads.set({})
        try:
            await super()._submit_run(flow_run)
        finally:
            _submission_reads.reset(token)

    async def run(self, flow_run: Any, configuration: ProcessJobConfiguration,
                  task_status: Optional[anyio.abc.TaskStatus[int]] = None) -> ProcessWorkerResult:
        _submission_reads.set(None)  # the submission is over: the run's own reads go to the server
        self._active_runs += 1
        try:
            return await self._run(flow_run, configuration, task_status)
        finally:
            self._active_runs -= 1
            refiller = getattr(self, "_ray_refiller", None)
            if refiller is not None:
                refiller.wake()  # the run's Ray workers ended with its program

    async def _run(self, flow_run: Any, configuration: ProcessJobConfiguration,
                   task_status: Optional[anyio.abc.TaskStatus[int]] = None) -> ProcessWorkerResult:
        if configuration._command_configured or await self._entrypoint(flow_run) != RUNNER_ENTRYPOINT:
            return await super().run(flow_run, configuration, task_status)
        if task_status is None:
            task_status = anyio.TASK_STATUS_IGNORED
        from flows.runner import run_program

        async def resolve_flow(_: Any) -> Any:
            return run_program

        cwd = str(configuration.working_dir or os.getcwd())
        async with self._executor_context() as context:
            starter = ForkedRunStarter(dict(configuration.env), cwd, context.control_channel,
                                       related=await self._related_objects(flow_run))
            executor = context.create_executor(flow_run, starter, resolve_flow=resolve_flow,
                                               propose_submitting=False)
            execution: Any = None

            async def execute(*, task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED,
                              ) -> None:
                nonlocal execution
                execution = await executor.submit(task_status=task_status)

            async with anyio.create_task_group() as group:
                handle = await group.start(execute)
                if handle.pid is None:
                    raise RuntimeError("Flow run process has no PID")
                task_status.started(handle.pid)
        if execution is None or execution.status_code is None:
            raise RuntimeError("Failed to start flow run process.")
        return ProcessWorkerResult(status_code=execution.status_code, identifier=str(execution.handle.pid))


async def _serve(pool: str, name: Optional[str], **options: Any) -> None:
    await WarmProcessWorker(work_pool_name=pool, name=name, **options).start()


def serve(pool: str, name: Optional[str] = None, limit: Optional[int] = None,
          work_queues: Optional[list[str]] = None, prefetch_seconds: Optional[float] = None) -> None:
    """Start the forkserver, then serve ``pool`` until stopped (``qsflow worker``; :mod:`deployments.worker`).
    The options are Prefect's worker's (``prefect worker start``): at most ``limit`` runs at once, only
    ``work_queues`` of the pool, runs due within ``prefetch_seconds``."""
    from deployments.connection import share_tls_contexts

    share_tls_contexts()  # the worker's clients too (its forked runs get it from PRELOAD)
    global _program_zygote
    _program_zygote = start_program_zygote()  # before the forkserver: it and the runs learn where it listens
    warm_up()
    print(f"qsflow warm worker: forkserver ready ({len(PRELOAD)} modules preloaded)", file=sys.stderr, flush=True)
    if _program_zygote is not None:  # a job taken before would import all it preloads itself, beside it
        from deployments import program_zygote

        ready = program_zygote.wait_until_listening(_program_zygote, os.environ[program_zygote.SOCKET_ENV])
        state = "ready" if ready else "not started: programs start as subprocesses"
        print(f"qsflow warm worker: program zygote {state}", file=sys.stderr, flush=True)
    # the zygote leaves by itself once this process has, after its last running program
    anyio.run(functools.partial(_serve, pool, name, limit=limit, work_queues=work_queues,
                                prefetch_seconds=prefetch_seconds))

