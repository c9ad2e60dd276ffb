"""``JobRayTaskRunner``: prefect-ray's ``RayTaskRunner`` that ships a job's Prefect context once, not per task.

prefect-ray's runner serializes Prefect's whole context (settings, flow run, tags) with every submit, and each Ray
worker rebuilds it for every task: the settings model is re-validated from that dict and two fresh API clients are
made (each loading the CA bundle). Measured here: ~80 ms of CPU per trivial task, ~6 ms without that rebuild
(docs/distribute.md). This subclass keeps everything else of prefect-ray — the same ``remote_options`` context for
Ray options, the same ``PrefectRayFuture``, Prefect's own task engine (``run_task_sync``) running the task in the
Ray worker and reporting its states — and changes only where the context travels:

* the driver serializes the context once per set of active tags, and each task object once, and ``ray.put``\\ s
  them; each call carries only those references, with its other arguments, as one argument (Ray hands refs
  nested in it over unresolved, and serializes it once);
* a worker hydrates each context it meets once (settings first, then one API client, then the flow run) and makes
  it current around each task it runs; it unpickles each task once, so a function shipped by value keeps its
  module-level state (say, a cache of pass managers) across calls on that worker, as a Ray remote function does.

The ``ray.remote`` wrapper is also built once per set of Ray options and task name instead of once per submit, and
a worker asks the server for tag concurrency slots only when one of a task run's tags has a limit (it re-reads the
list of limits every ``TAG_LIMITS_TTL`` seconds) instead of once per tagged task run.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Iterator, Optional

from prefect.context import (
    FlowRunContext,
    SettingsContext,
    SyncClientContext,
    TagsContext,
    hydrated_context,
    serialize_context,
)
from prefect.client.schemas.objects import TaskRunResult
from prefect.futures import PrefectFuture
from prefect.task_engine import run_task_async, run_task_sync
from prefect.tasks import Task
from prefect.utilities.collections import visit_collection
from prefect.utilities.engine import collect_task_run_inputs_sync
from prefect_ray import RayTaskRunner
from prefect_ray.context import RemoteOptionsContext
from prefect_ray.task_runners import PrefectRayFuture

from deployments import related_resources
from tasks import circuit_transport, qiskit_threads


class JobRayTaskRunner(RayTaskRunner):
    """A ``RayTaskRunner`` for long-lived flow runs with many tasks (a qsflow job's distributed calls)."""

    def __init__(self, address: Optional[str] = None, init_kwargs: Optional[dict[str, Any]] = None,
                 return_values: bool = False) -> None:
        """``return_values``: each Ray task returns the task's value (raising its exception, as a Ray task does)
        instead of its final Prefect state, so the future's ``wrapped_future`` can be handed to code written for
        plain Ray (``ray.get``, ``ray.wait``); the states still reach the Prefect server."""
        super().__init__(address=address, init_kwargs=init_kwargs)
        self.return_values = return_values
        self._lock = threading.Lock()
        self._task_run_ids: dict[str, uuid.UUID] = {}  # Ray object id (hex) of a call's result -> its task run
        self._contexts: dict[Any, tuple[Any, str, Any]] = {}  # tags -> (None, key, ref of the context)
        self._tasks: dict[Any, tuple[Any, str, Any]] = {}  # id(task) -> (task, key, ref of the task)
        self._remotes: dict[str, Any] = {}

    def duplicate(self) -> "JobRayTaskRunner":
        return type(self)(address=self.address, init_kwargs=self.init_kwargs, return_values=self.return_values)

    def __reduce__(self) -> tuple[Any, ...]:
        # Shipped inside the flow of the serialized context: the other side gets a fresh, unstarted copy (as
        # ``duplicate`` gives), without this one's lock, caches and Ray refs.
        return (type(self), (self.address, self.init_kwargs, self.return_values))

    def _stored(self, cache: dict[Any, tuple[Any, str, Any]], key: Any, owner: Any,
                make: Callable[[], Any]) -> tuple[str, Any]:
        """``(id, ray ref)`` of ``make()``, ``ray.put`` once per ``key`` (``owner`` guards a key that may be reused)."""
        shared = cache.get(key)
        if shared is None or shared[0] is not owner:
            with self._lock:
                shared = cache.get(key)
                if shared is None or shared[0] is not owner:
                    import ray

                    shared = (owner, uuid.uuid4().hex, ray.put(make()))
                    cache[key] = shared
        return shared[1], shared[2]

    def _shared_context(self) -> tuple[str, Any]:
        """The current Prefect context, serialized and stored once per set of active tags."""
        tags_context = TagsContext.get()
        tags = tuple(sorted(tags_context.current_tags)) if tags_context else ()
        return self._stored(self._contexts, tags, None, _serialized_context)

    def _shared_task(self, task: Task[Any, Any]) -> tuple[str, Any]:
        """``task``, stored once: a worker unpickles each task once, so module-level state of a function shipped by
        value (a cache in the program's ``__main__``) lasts across its calls, as with a Ray remote function."""
        return self._stored(self._tasks, id(task), task, lambda: task)

    def _remote(self, options: dict[str, Any], name: str) -> Any:
        """The Ray remote function running Prefect tasks with ``options``, its Ray tasks named ``name`` (built once
        per distinct options and name)."""
        import ray

        key = json.dumps([options, name], sort_keys=True, default=str)
        remote = self._remotes.get(key)
        if remote is None:
            remote = ray.remote(**options)(_run_call) if options else ray.remote(_run_call)
            remote = self._remotes[key] = remote.options(name=name)
        return remote

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Optional[Iterable[PrefectFuture[Any]]] = None,
        dependencies: Optional[dict[str, set[Any]]] = None,
    ) -> PrefectRayFuture[Any]:
        if not self._started:
            raise RuntimeError("Enter the task runner (`with JobRayTaskRunner(...) as runner:`) before submitting.")
        task_run_id = uuid.uuid4()
        if dependencies is None:  # upstream futures become the task run's inputs (lineage in the UI)
            dependencies = {name: collect_task_run_inputs_sync(value, future_cls=PrefectRayFuture)
                            for name, value in parameters.items()}
        context_key, context_ref = self._shared_context()
        parameters, upstream = self._exchange_prefect_for_ray_futures(parameters)
        for name, value in parameters.items():  # Ray refs anywhere in the arguments: Ray waits for them too
            for ref in _object_refs(value):
                if ref not in upstream:
                    upstream.append(ref)
                known = self._task_run_ids.get(ref.hex())
                if known is not None:
                    dependencies.setdefault(name, set()).add(TaskRunResult(id=known))
        options = RemoteOptionsContext.get().current_remote_options
        call = dict(shared_task=list(self._shared_task(task)), task_run_id=task_run_id,
                    shared_context=[context_key, context_ref], parameters=parameters, wait_for=wait_for,
                    dependencies=dependencies, return_type="result" if self.return_values else "state")
        object_ref = self._remote(options, task.name).remote(call, *upstream)
        if self.return_values:
            self._task_run_ids[object_ref.hex()] = task_run_id
        return PrefectRayFuture(task_run_id=task_run_id, wrapped_future=object_ref)


TAG_LIMITS_KEY = "qsflow_tag_limits"
FLOW_KEY = "qsflow_flow"


def _serialized_context() -> dict[str, Any]:
    """Prefect's context to ship, with three things a worker would otherwise pay for before its first task:

    * the settings as the objects they are, not Prefect's dict of them: a worker rebuilt ``Settings`` from that
      dict, re-reading its environment and dotenv sources (~25 ms of CPU quiet, a fifth of a pool worker's first
      batch on a busy machine; py-spy). The tasks so run with the program's own settings, complete;
    * the server's tag concurrency limits, read once here (with when);
    * the job's flow, read once here: Prefect's events worker in each Ray worker read it from the API for the
      first task run's events (a related resource), on a new async client."""
    serialized = serialize_context()
    settings_context = SettingsContext.get()
    if settings_context is not None:
        serialized["settings_context"] = {"profile": settings_context.profile, "settings": settings_context.settings}
    from prefect.client.orchestration import SyncPrefectClient

    flow_run_context = FlowRunContext.get()
    client = getattr(flow_run_context, "client", None)
    if isinstance(client, SyncPrefectClient):  # a job's program (tasks.prefect_ray_engine)
        with contextlib.suppress(Exception):  # each worker then reads them itself, as without a seed
            serialized[TAG_LIMITS_KEY] = (_TagLimits.read(client), time.time())
        flow_run = getattr(flow_run_context, "flow_run", None)
        if flow_run is not None:
            with contextlib.suppress(Exception):  # each worker's events worker then reads it, as without a seed
                serialized[FLOW_KEY] = client.read_flow(flow_run.flow_id)
    return serialized


# --- in the Ray worker -------------------------------------------------------------------------------------------

_hydrated: dict[str, list[Any]] = {}
_tasks: dict[str, Task[Any, Any]] = {}
_stacks: list[contextlib.ExitStack] = []  # one per hydrated context, never closed: clients stay open while the worker lives
_hydrate_lock = threading.Lock()


def _hydrate(key: str, context_ref: Any) -> list[Any]:
    """The context objects for ``key``, built the first time this worker meets it and kept for its lifetime."""
    contexts = _hydrated.get(key)
    if contexts is not None:
        return contexts
    import ray

    with _hydrate_lock:
        contexts = _hydrated.get(key)
        if contexts is None:
            serialized = dict(ray.get(context_ref))
            limits = serialized.pop(TAG_LIMITS_KEY, None)
            if limits is not None:
                _tag_limits.seed(*limits)
            flow = serialized.pop(FLOW_KEY, None)
            if flow is not None:  # for Prefect's events worker, which would read it from the API
                related_resources.seed({f"flow.{flow.id}": flow})
            stack = contextlib.ExitStack()
            settings = serialized.pop("settings_context", None)
            if settings:
                stack.enter_context(SettingsContext(**settings))  # before the client, which reads the settings
            client = stack.enter_context(SyncClientContext())
            stack.enter_context(hydrated_context(serialized, client=client.client))
            contexts = [ctx for ctx in (SettingsContext.get(), client, FlowRunContext.get(), TagsContext.get())
                        if ctx is not None]
            _quiet_console()
            _install_tag_limit_check()
            _stacks.append(stack)
            _hydrated[key] = contexts
    return contexts


TAG_LIMITS_TTL = 10.0  # seconds a worker trusts its list of the server's tag concurrency limits
_logger = logging.getLogger("qsflow.tasks")


class _TagLimits:
    """Which tag-based concurrency limits the Prefect server has, as this worker last read them (one API call).

    A worker starts from the list its job's program read (:meth:`seed`). Once that list is older than
    ``TAG_LIMITS_TTL`` seconds the next task run starts one re-read in a background thread and goes on with the
    list it has: a re-read in the task run itself waited for a server busy recording the job's task runs (py-spy:
    a third of a warm worker's task-run time in a burst of 200 trivial tasks). A limit created while a job runs
    thus applies to its tasks within ``TAG_LIMITS_TTL`` seconds and one read. Only a worker that has no list at all
    (no seed) reads in the task run."""

    def __init__(self) -> None:
        self._names: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._refreshing = False
        self._lock = threading.Lock()

    def any_of(self, names: list[str], client: Any = None) -> bool:
        """Whether one of ``names`` has a limit, as last read (``client``: default, the worker's open one)."""
        if time.monotonic() - self._read_at > TAG_LIMITS_TTL:
            if self._read_at == float("-inf"):
                with self._lock:
                    if self._read_at == float("-inf"):
                        started = time.monotonic()
                        self._names = frozenset(self.read(client))
                        self._read_at = started
            else:
                self._refresh_in_background(client)
        return any(name in self._names for name in names)

    def _refresh_in_background(self, client: Any) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True
        from prefect.client.orchestration import get_client

        client = client or get_client(sync_client=True)  # the worker's open client: its SyncClientContext is current
        context = contextvars.copy_context()  # Prefect's settings for the thread
        threading.Thread(target=context.run, args=(self._refresh, client), name="qsflow-tag-limits",
                         daemon=True).start()

    def _refresh(self, client: Any) -> None:
        started = time.monotonic()
        try:
            names = frozenset(self.read(client))
        except Exception as error:  # noqa: BLE001 - keep the list it has; the next TTL tries again
            _logger.warning("Could not re-read the Prefect server's concurrency limits (kept the last list): %s",
                            error)
            names = None
        with self._lock:
            if names is not None:
                self._names = names
            self._read_at = max(self._read_at, started)
            self._refreshing = False

    def seed(self, names: list[str], read_at: float) -> None:
        """Start from ``names``, read by the job's program at ``read_at`` (wall clock); kept until the TTL from
        then, unless this worker read newer ones itself."""
        age = max(0.0, time.time() - read_at)
        with self._lock:
            if time.monotonic() - age > self._read_at:
                self._names, self._read_at = frozenset(names), time.monotonic() - age

    @staticmethod
    def read(client: Any = None) -> list[str]:
        """The names of the server's concurrency limits (tag limits are named ``tag:<tag>``), read with ``client``
        (the program's flow-run client), else the worker's open one (its ``SyncClientContext`` is current)."""
        from prefect.client.orchestration import get_client

        client = client or get_client(sync_client=True)
        names: list[str] = []
        while True:
            page = client.read_global_concurrency_limits(limit=200, offset=len(names))
            names += [limit.name for limit in page]
            if len(page) < 200:
                return names


_tag_limits = _TagLimits()


def _skip_unlimited_tags(acquire: Callable[..., Any]) -> Callable[..., Any]:
    """Prefect's task engine asks the server for a concurrency slot on every tag of every task run, limit or not:
    one round trip per task (~37 ms of server CPU here). This wraps that acquisition so it runs only when one of
    the tags has a limit; the limits themselves are Prefect's, and a limit created while a job runs applies to
    its tasks within ``TAG_LIMITS_TTL`` seconds and one read (:class:`_TagLimits`)."""

    @contextlib.contextmanager
    def concurrency(names: Any, *args: Any, **kwargs: Any) -> Iterator[None]:
        listed = names if isinstance(names, list) else [names]
        if listed and not _tag_limits.any_of(listed):
            yield
            return
        with acquire(names, *args, **kwargs):
            yield

    concurrency.qsflow_skips_unlimited_tags = True  # type: ignore[attr-defined]
    return concurrency


def _install_tag_limit_check() -> None:
    """Route this worker's sync task engine through :func:`_skip_unlimited_tags` (once)."""
    import prefect.task_engine as engine

    current = getattr(engine, "_concurrency", None)
    if current is not None and not getattr(current, "qsflow_skips_unlimited_tags", False):
        engine._concurrency = _skip_unlimited_tags(current)


def _quiet_console() -> None:
    """Prefect's task-run log lines go to the API (the task run's logs in the UI), not through the root logger's
    console handler to this worker's stdout, which Ray forwards into the job's log: that log keeps what the
    program and its tasks print or log themselves."""
    logging.getLogger("prefect.task_runs").propagate = False


@contextlib.contextmanager
def _current(contexts: list[Any]) -> Iterator[None]:
    """Make each hydrated context the active one of its kind for this block (they are entered once, at hydration)."""
    tokens = [(type(ctx).__var__, type(ctx).__var__.set(ctx)) for ctx in contexts]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _task(key: str, task_ref: Any) -> Task[Any, Any]:
    """The task stored under ``key``, unpickled the first time this worker meets it and kept."""
    task = _tasks.get(key)
    if task is None:
        import ray

        task = _tasks.setdefault(key, ray.get(task_ref))
    return task


def _object_refs(value: Any) -> list[Any]:
    """The Ray ``ObjectRef``\\ s anywhere in ``value`` (lists, dicts, ... as Prefect visits collections)."""
    import ray

    found: list[Any] = []
    visit_collection(value, visit_fn=lambda x: found.append(x) if isinstance(x, ray.ObjectRef) else None)
    return found


def _new_task_run(call: dict[str, Any]) -> Any:
    """The task run for ``call`` (``_run_task``'s arguments for Prefect's engine), built here as Prefect's engine
    builds it, so that the engine runs it without announcing it first: handed no task run, the engine creates one
    and emits its ``Pending`` state, microseconds before ``Running`` in the same worker. That event told nothing
    the ``Running`` one does not (the run is not waiting anywhere in between) and cost a third of each task run's
    events: its build and send in the worker, its ingest, storage and recording in the server (measured: 15-20% of
    the engine's CPU per trivial task run in a plain process, 20-30% of the server's). Such task runs go Running,
    then Completed or Failed. ``None`` where this Prefect has no local task-run factory: the engine then creates it
    as before."""
    from prefect import task_engine

    create = getattr(task_engine, "_create_task_run_locally", None)
    if create is None:
        return None
    return create(task=call["task"], id=call["task_run_id"], parameters=call["parameters"],
                  wait_for=call["wait_for"], extra_task_inputs=call["dependencies"])


def _run_call(call: dict[str, Any], *upstream: Any) -> Any:
    """What each Ray task runs: :func:`_run_task` with the call's arguments, which travel as one argument. Ray
    serializes each top-level argument and each keyword's name on its own: 14 serializations per call with them
    as keywords. The refs inside ``call`` stay refs. ``upstream`` holds the Ray refs of upstream tasks: passing
    them as top-level arguments makes Ray wait for them (their values are not used here)."""
    return _run_task(**call)


def _run_task(*, shared_task: list[Any], task_run_id: uuid.UUID, shared_context: list[Any],
              parameters: dict[str, Any], wait_for: Any = None, dependencies: Any = None,
              return_type: str = "state") -> Any:
    """Run one Prefect task with Prefect's task engine, in the job's context; returns the task run's final state
    (``return_type="state"``) or its value, raising the task's exception (``"result"``)."""
    import asyncio

    import ray

    contexts = _hydrate(*shared_context)
    task = _task(*shared_task)
    parameters = visit_collection(parameters, return_data=True,
                                  visit_fn=lambda x: ray.get(x) if isinstance(x, ray.ObjectRef) else x)
    kwargs = dict(task=task, task_run_id=task_run_id, parameters=parameters, wait_for=wait_for,
                  dependencies=dependencies, return_type=return_type)
    with _current(contexts), qiskit_threads.sized_to_task():
        kwargs["task_run"] = _new_task_run(kwargs)
        value = asyncio.run(run_task_async(**kwargs)) if task.isasync else run_task_sync(**kwargs)
    circuit_transport.register_if_loaded()  # before Ray pickles the value: circuits as QPY
    return value
