"""The embedded worker starts the runner flow's runs forked from its warm forkserver (deployments.warm_worker),
as Prefect flow runs with the usual states; tests/test_main_path.py covers the rest of a job's life on it
(statuses, failure, job.stop())."""

from __future__ import annotations

from conftest import PROGRAMS, job_status_events
from serverless_compat import QiskitFunction


def test_runner_runs_are_forked_from_the_warm_forkserver(client, prefect) -> None:
    from deployments import server

    function = client.upload(QiskitFunction(title="warm-worker", entrypoint="main.py",
                                            working_dir=str(PROGRAMS / "warm_worker")))
    first, second = function.run(), function.run()
    results = [first.result(cadence=0.5), second.result(cadence=0.5)]
    for result in results:
        # the runner process is a child of the forkserver that preloaded Prefect's engine and qsflow's runner
        assert "multiprocessing.forkserver" in result["runner_command"], result
        assert "deployments.warm_preload" in result["runner_command"], result
        # ... and the program is forked by the worker's program zygote, with Qiskit already loaded
        assert "deployments.program_zygote" in result["parent_command"] and result["preloaded"], result
    assert results[0]["runner_pid"] != results[1]["runner_pid"]  # one process per run

    worker_pid = server.status()["worker_pid"]
    with open(f"/proc/{worker_pid}/cmdline", "rb") as handle:  # the embedded default's worker is `qsflow worker`
        assert b"deployments.cli\x00worker\x00--pool\x00qsflow\x00" in handle.read()

    # still Prefect flow runs with Prefect's states, as with the stock worker
    from uuid import UUID

    states = [(s.type.value, s.name) for s in prefect.read_flow_run_states(UUID(first.job_id))]
    # the engine's own Running is named INITIALIZING: no second state write for that status
    assert states == [("SCHEDULED", "Scheduled"), ("PENDING", "Pending"), ("RUNNING", "INITIALIZING"),
                      ("RUNNING", "RUNNING"), ("COMPLETED", "Completed")], states
    # ... and the job still reports every status
    events = job_status_events(prefect, first.job_id, until="DONE")
    assert [e.resource["qsflow.status"] for e in events] == ["QUEUED", "INITIALIZING", "RUNNING", "DONE"]


def test_a_scheduled_run_is_not_polled_for_while_this_workers_runs_fill_the_pools_limit() -> None:
    """Only the worker's own runs count: with other workers' runs on the pool it still polls (never one too few)."""
    from prefect.client.schemas.objects import WorkPool

    from deployments.warm_worker import WarmProcessWorker

    worker = WarmProcessWorker(work_pool_name="qsflow")
    assert not worker._pool_filled_here()  # the pool not read yet
    worker._work_pool = WorkPool(name="qsflow", type="process", concurrency_limit=2)
    worker._active_runs = 1
    assert not worker._pool_filled_here()
    worker._active_runs = 2
    assert worker._pool_filled_here()
    worker._work_pool = WorkPool(name="qsflow", type="process")  # no limit
    assert not worker._pool_filled_here()


def _state_event(state: str, run_id: str, pool: str = "qsflow"):
    from prefect.events import Event

    pool_resource = {"prefect.resource.id": f"prefect.work-pool.{pool}-id", "prefect.resource.role": "work-pool",
                     "prefect.resource.name": pool}
    return Event(event=f"prefect.flow-run.{state}", resource={"prefect.resource.id": f"prefect.flow-run.{run_id}"},
                 related=[pool_resource])


def test_an_end_is_polled_for_only_while_a_run_may_wait_for_the_slot_it_freed() -> None:
    """Each poll costs the server ~20 ms of CPU: after a job's end the worker polls only if a run it saw scheduled
    (and neither took nor saw end) may wait for the slot; until its event stream is open and read, at every end."""
    from uuid import uuid4

    from prefect.client.schemas.objects import FlowRun, WorkPool

    from deployments.warm_worker import WarmProcessWorker

    a, b, c, d, e, f = (str(uuid4()) for _ in range(6))
    worker = WarmProcessWorker(work_pool_name="qsflow")
    worker._runs_task_group = object()  # stands for the worker's loops having started
    worker._work_pool = WorkPool(name="qsflow", type="process", concurrency_limit=2)
    assert worker._poll_wanted(_state_event("Completed", a))  # what may wait is not known yet
    worker._waiting_unknown = False  # the stream is open and the pool's scheduled runs were read: none
    assert not worker._poll_wanted(_state_event("Completed", a))
    assert worker._poll_wanted(_state_event("Scheduled", b))  # polled for at once, and waits until taken
    assert worker._poll_wanted(_state_event("Failed", a))  # b may wait for that slot
    worker._note_taken([FlowRun(id=b, flow_id=uuid4())])  # a poll took it
    assert not worker._poll_wanted(_state_event("Crashed", c))
    # another pool's runs are not this worker's to wait for
    assert not worker._poll_wanted(_state_event("Scheduled", d, pool="other"))
    assert not worker._poll_wanted(_state_event("Completed", c))
    # a run awaiting a retry waits too, until it ends (taken by another worker, or cancelled)
    assert worker._poll_wanted(_state_event("AwaitingRetry", e))
    assert worker._poll_wanted(_state_event("Completed", c))
    assert not worker._poll_wanted(_state_event("Cancelled", e))
    # while its own runs fill the pool's limit, a scheduled run is noted but not polled for; the next end polls
    worker._active_runs = 2
    assert not worker._poll_wanted(_state_event("Scheduled", f))
    assert worker._poll_wanted(_state_event("Completed", c))


def test_the_runs_scheduled_before_the_event_stream_opened_are_read_from_the_pool(client, prefect) -> None:
    """A run scheduled while the worker was not listening (its start, a lost stream) is read from the server."""
    import asyncio
    from datetime import datetime, timedelta, timezone
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    from deployments.programs import deployment_name
    from deployments.settings import WORK_POOL
    from deployments.warm_worker import WarmProcessWorker

    function = client.upload(QiskitFunction(title="warm-waiting", entrypoint="main.py",
                                            working_dir=str(PROGRAMS / "warm_worker")))
    deployment = prefect.read_deployment_by_name(deployment_name(function.title))
    later = prefect.create_flow_run_from_deployment(
        deployment.id, state=Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(hours=1)))
    worker = WarmProcessWorker(work_pool_name=WORK_POOL)

    async def read() -> None:
        async with get_client() as api:
            worker._client = api
            await worker._read_waiting()

    try:
        asyncio.run(read())
        assert str(later.id) in worker._waiting and not worker._waiting_unknown, worker._waiting
    finally:
        prefect.delete_flow_run(UUID(str(later.id)))


def test_a_runs_events_name_the_flow_deployment_queue_and_pool_the_worker_handed_it(client, prefect) -> None:
    """The worker hands each forked run its flow, deployment, work queue and work pool (read at most once a minute)
    for Prefect's related-resource cache; the run's events still name all four, as when the run read them itself."""
    import time
    from uuid import UUID

    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    function = client.upload(QiskitFunction(title="warm-related", entrypoint="main.py",
                                            working_dir=str(PROGRAMS / "warm_worker")))
    job = function.run()
    job.result(cadence=0.5)
    flow_run = prefect.read_flow_run(UUID(job.job_id))
    deployment = prefect.read_deployment(flow_run.deployment_id)
    flow = prefect.read_flow(flow_run.flow_id)
    wanted = {("flow", str(flow.id), flow.name), ("deployment", str(deployment.id), deployment.name),
              ("work-queue", str(flow_run.work_queue_id), flow_run.work_queue_name),
              ("work-pool", None, flow_run.work_pool_name)}
    loaded = EventFilter(event=EventNameFilter(prefix=["prefect.block."]),
                         related=EventRelatedFilter(id=[f"prefect.flow-run.{job.job_id}"]))
    deadline = time.monotonic() + 30  # the server stores events in batches
    while not (events := prefect.read_events(loaded, limit=5).events) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert events, "the run loaded its store and Prefect emitted no event naming the run"
    named = {(r.role, r.id.split(".", 2)[2], r.name) for r in events[0].related if r.role in {k for k, _, _ in wanted}}
    assert {(kind, name) for kind, _, name in wanted} == {(kind, name) for kind, _, name in named}, named
    assert {(kind, i) for kind, i, _ in wanted if i} <= {(kind, i) for kind, i, _ in named}, named


def test_the_objects_handed_to_a_run_are_found_where_prefects_events_code_looks_for_them() -> None:
    """``related_resources.seed`` keys them as Prefect's ``_get_and_cache_related_object`` does: no API read."""
    import asyncio
    from uuid import uuid4

    from prefect.client.schemas.objects import Flow, WorkPool
    from prefect.events.related import RESOURCE_CACHE, _get_and_cache_related_object

    from deployments import related_resources

    flow, pool = Flow(id=uuid4(), name="seeded"), WorkPool(name=f"pool-{uuid4().hex[:6]}", type="process")

    async def no_read(obj_id):
        raise AssertionError(f"read {obj_id} from the API")

    async def lookups():
        return [await _get_and_cache_related_object(kind="flow", role="flow", client_method=no_read,
                                                    obj_id=flow.id, cache=RESOURCE_CACHE),
                await _get_and_cache_related_object(kind="work-pool", role="work-pool", client_method=no_read,
                                                    obj_id=pool.name, cache=RESOURCE_CACHE)]

    try:
        related_resources.seed({f"flow.{flow.id}": flow, f"work-pool.{pool.name}": pool})
        found = asyncio.run(lookups())
        assert [entry["object"] for entry in found] == [flow, pool]
        assert [entry["kind"] for entry in found] == ["flow", "work-pool"]
    finally:
        RESOURCE_CACHE.pop(f"flow.{flow.id}", None)
        RESOURCE_CACHE.pop(f"work-pool.{pool.name}", None)


def test_a_job_suspended_from_outside_while_its_program_runs_still_ends_done(client, prefect, tmp_path) -> None:
    """The runner's run starts no suspension observer (``warm_worker._without_suspension_observer``): with Prefect's,
    a run suspended through the API while its program ran stayed Suspended (QUEUED) after the program had finished
    and saved its result, and a resume would have run the program again."""
    import time
    from uuid import UUID

    from prefect.states import Suspended

    function = client.upload(QiskitFunction(title="suspend-outside", entrypoint="main.py",
                                            working_dir=str(PROGRAMS / "wait_for_flag")))
    flag = tmp_path / "go"
    job = function.run(flag=str(flag))
    deadline = time.monotonic() + 60
    while not flag.with_name("go.started").exists():
        assert time.monotonic() < deadline and job.status() not in {"DONE", "ERROR", "CANCELED"}, job.logs()
        time.sleep(0.1)
    answer = prefect.set_flow_run_state(UUID(job.job_id), Suspended(timeout_seconds=600), force=True)
    assert answer.state is not None and answer.state.name == "Suspended", answer
    flag.touch()
    assert job.wait(timeout=30, poll=0.2) == "DONE"
    assert job.result() == {"finished": True}
    names = [s.name for s in prefect.read_flow_run_states(UUID(job.job_id))]
    assert names[-2:] == ["Suspended", "Completed"], names


def test_a_submission_reads_the_runs_deployment_once(prefect) -> None:
    """Prefect's worker reads a run's deployment twice while it submits the run (whether it still exists, then for
    its job configuration); the warm worker answers the second read with the first. The worker here is the real
    one on the session's server, with its own pool; only its ``_run`` stops short of starting a process."""
    import asyncio
    from uuid import uuid4

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.logging.handlers import APILogHandler
    from prefect.utilities.dispatch import get_registry_for_type
    from prefect.workers.base import BaseWorker
    from prefect.workers.process import ProcessWorkerResult

    from deployments.warm_worker import RUNNER_ENTRYPOINT, WarmProcessWorker

    pool = f"submit-{uuid4().hex[:8]}"
    prefect.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    deployment_id = prefect.create_deployment(flow_id=prefect.create_flow_from_name(pool), name=pool,
                                              entrypoint=RUNNER_ENTRYPOINT, work_pool_name=pool)
    flow_run = prefect.create_flow_run_from_deployment(deployment_id)
    reads, clients_in_run = [], []

    class Spy:  # the real client, its deployment reads counted
        def __init__(self, real):
            self.real = real

        async def read_deployment(self, deployment_id):
            reads.append(deployment_id)
            return await self.real.read_deployment(deployment_id)

        def __getattr__(self, name):
            return getattr(self.real, name)

    registry = get_registry_for_type(BaseWorker)  # the subclass below takes over the "process" type: given back
    registered = registry["process"]

    class Worker(WarmProcessWorker):
        async def _run(self, flow_run, configuration, task_status=None):
            clients_in_run.append(self.client)
            if task_status is not None:
                task_status.started(0)
            return ProcessWorkerResult(status_code=0, identifier="0")

    async def submit() -> list:
        async with Worker(work_pool_name=pool) as worker:
            worker._client = Spy(worker._client)
            return await worker.get_and_submit_flow_runs()

    try:
        taken = asyncio.run(submit())
        APILogHandler().flush()  # the worker's log lines about the run, while the server is up
        assert [run.id for run in taken] == [flow_run.id]
        assert reads == [deployment_id], reads  # one read for Prefect's two
        assert clients_in_run and isinstance(clients_in_run[0], Spy)  # the run's own reads go to the client
    finally:
        registry["process"] = registered
        prefect.delete_flow_run(flow_run.id)
        prefect.delete_deployment(deployment_id)
        prefect.delete_work_pool(pool)
