"""The embedded server's SQLite event writer (deployments.sqlite_tuning) against Prefect's own, on a real Prefect
database in a temporary SQLite file: the same events give the same rows, and events stored already are skipped."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from deployments import sqlite_tuning


def _events(flow_run: uuid.UUID, count: int) -> list[Any]:
    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.types._datetime import now

    events = []
    for index in range(count):
        task_run = uuid.uuid4()
        events.append(ReceivedEvent(
            occurred=now("UTC"), event="prefect.task-run.Completed", id=uuid.uuid4(),
            resource={"prefect.resource.id": f"prefect.task-run.{task_run}", "prefect.resource.name": f"square-{index}",
                      "prefect.state-type": "COMPLETED"},
            related=[{"prefect.resource.id": f"prefect.flow-run.{flow_run}", "prefect.resource.role": "flow-run",
                      "prefect.resource.name": "job"},
                     {"prefect.resource.id": "prefect.tag.distributed", "prefect.resource.role": "tag"},
                     {"prefect.resource.id": f"prefect.tag.cpu:{index % 2}", "prefect.resource.role": "tag"}],
            payload={"validated_state": {"type": "COMPLETED", "name": "Completed"}, "index": index},
        ))
    return events


async def _rows(db: Any, flow_run: uuid.UUID) -> tuple[list, list]:
    """Stored events of ``flow_run`` and their resources, with what differs between two writes (ids, the time of
    recording) left out: the flow run's and task runs' ids become FLOW and TASK-<task name>."""
    async with db.session_context() as session:
        events = (await session.execute(sa.select(db.Event).where(
            db.Event.related_resource_ids.contains(f"prefect.flow-run.{flow_run}")))).scalars().all()
        by_id = {event.id: event for event in events}
        resources = (await session.execute(sa.select(db.EventResource).where(
            db.EventResource.event_id.in_(by_id)))).scalars().all()
    names = {event.resource_id: f"TASK-{event.resource['prefect.resource.name']}" for event in events}

    def plain(value: Any) -> str:
        text = json.dumps(value, sort_keys=True, default=str).replace(str(flow_run), "FLOW")
        for resource_id, name in names.items():
            text = text.replace(resource_id, name)
        return text

    event_rows = sorted(plain([e.event, e.resource_id, e.resource, e.related, e.related_resource_ids, e.payload])
                        for e in events)
    resource_rows = sorted(plain([by_id[r.event_id].resource_id, r.resource_id, r.resource_role, r.resource,
                                  r.occurred == by_id[r.event_id].occurred]) for r in resources)
    return event_rows, resource_rows


@pytest.fixture(autouse=True)
def no_listener_left():
    """``install()`` listens to every ORM session of the process: stop listening after each test."""
    from sqlalchemy.orm import Session

    yield
    if sa.event.contains(Session, "do_orm_execute", sqlite_tuning._as_executemany):
        sa.event.remove(Session, "do_orm_execute", sqlite_tuning._as_executemany)


@pytest.fixture()
def database(tmp_path: Path):
    from prefect.server.database import provide_database_interface
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME, temporary_settings

    with temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
                             PREFECT_HOME: str(tmp_path / "prefect")}):
        db = provide_database_interface()
        asyncio.run(db.create_db())
        yield db


def test_the_executemany_writer_stores_what_prefects_writer_stores_and_skips_stored_events(database, monkeypatch):
    from prefect.server.events.storage import database as storage

    prefects_writer = storage._write_sqlite_events
    ours, theirs = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> None:
        async with database.session_context(begin_transaction=True) as session:
            await storage.write_events(session, _events(theirs, 25))  # Prefect's writer
        monkeypatch.setattr(storage, "_write_sqlite_events", prefects_writer)
        sqlite_tuning.install()
        assert storage._write_sqlite_events is sqlite_tuning.write_sqlite_events
        first = _events(ours, 25)
        async with database.session_context(begin_transaction=True) as session:
            await storage.write_events(session, first[:10])
        async with database.session_context(begin_transaction=True) as session:
            await storage.write_events(session, first)  # ten of them are stored already: skipped, no error

        assert await _rows(database, ours) == await _rows(database, theirs)
        event_rows, resource_rows = await _rows(database, ours)
        assert len(event_rows) == 25 and len(resource_rows) == 25 * 4

    asyncio.run(scenario())


def test_install_is_idempotent_and_begins_sqlite_writes_immediate(monkeypatch):
    from prefect.server.database import configurations
    from prefect.server.events.storage import database as storage

    # restored afterwards: this process runs no server, but keep Prefect as other tests found it
    monkeypatch.setattr(configurations.AioSqliteConfiguration, "begin_transaction",
                        configurations.AioSqliteConfiguration.begin_transaction)
    monkeypatch.setattr(storage, "_write_sqlite_events", storage._write_sqlite_events)
    sqlite_tuning.install()
    begin = configurations.AioSqliteConfiguration.begin_transaction
    sqlite_tuning.install()
    assert configurations.AioSqliteConfiguration.begin_transaction is begin
    assert getattr(begin, "qsflow_immediate", False)


def _task_run_events(flow_run: uuid.UUID, count: int, monkeypatch: Any) -> list[Any]:
    """What a job's Ray workers emit for ``count`` task runs (Prefect's own event builder): Running, then Completed,
    the last one Failed; as the server receives them."""
    from prefect.client.schemas.objects import TaskRun
    from prefect.states import Completed, Failed, Running
    from prefect.utilities import engine

    captured: list[Any] = []

    def capture(**fields: Any) -> Any:
        from prefect.events import Event

        follows = fields.pop("follows", None)
        # the flow run as Prefect's events worker relates it from the run's context
        fields["related"] = [*fields["related"], {"prefect.resource.id": f"prefect.flow-run.{flow_run}",
                                                  "prefect.resource.role": "flow-run", "prefect.resource.name": "job"}]
        captured.append(Event(**fields, follows=follows.id if follows is not None else None))
        return captured[-1]

    with monkeypatch.context() as patched:  # only around the emits: undo() would drop the test's other patches
        patched.setattr(engine, "emit_event", capture)
        for index in range(count):
            run = TaskRun(id=uuid.uuid4(), name=f"square-{index}", flow_run_id=flow_run, task_key="square",
                          dynamic_key=str(index), tags=["distributed", f"cpu:{index % 2}"], run_count=1)
            running = Running()
            follows = engine.emit_task_run_state_change_event(task_run=run, initial_state=None,
                                                              validated_state=running)
            run.state, run.start_time = running, running.timestamp
            end = Failed(message="boom") if index == count - 1 else Completed()
            run.end_time = end.timestamp
            engine.emit_task_run_state_change_event(task_run=run, initial_state=running, validated_state=end,
                                                    follows=follows)
    from prefect.server.events.schemas.events import Event as ServerEvent

    return [ServerEvent.model_validate_json(event.model_dump_json()).receive() for event in captured]


async def _task_run_rows(db: Any, flow_run: uuid.UUID) -> tuple[list, list]:
    """The flow run's task runs and their states, keyed by task run name, without ids and recording times."""
    async with db.session_context() as session:
        runs = (await session.execute(sa.select(db.TaskRun).where(db.TaskRun.flow_run_id == flow_run))).scalars().all()
        names = {run.id: run.name for run in runs}
        states = (await session.execute(sa.select(db.TaskRunState).where(
            db.TaskRunState.task_run_id.in_(names)))).scalars().all()
    skip = {"id", "created", "updated", "flow_run_id", "state_id", "_sa_instance_state", "_state"}

    def plain(value: Any) -> Any:  # times differ between two recordings: whether there is one is compared
        return "<time>" if isinstance(value, (dt.datetime, dt.timedelta)) else value

    run_rows = sorted(json.dumps({k: plain(v) for k, v in vars(run).items() if k not in skip}, sort_keys=True,
                                 default=str) for run in runs)
    state_rows = sorted(json.dumps([names[s.task_run_id], s.type, s.name, s.message,
                                    s.state_details.task_run_id == s.task_run_id], default=str)
                        for s in states)
    return run_rows, state_rows


def test_many_row_inserts_run_as_executemany_and_record_what_prefect_records(database, monkeypatch):
    """Prefect's task-run recorder and log writer, as they are and with the executemany hook: the same task runs,
    states and logs; with the hook the recorder's and log writer's INSERTs reach SQLite as executemany."""
    from prefect.server import models, schemas
    from prefect.server.services import task_run_recorder

    executed: list[tuple[str, bool]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.startswith("INSERT INTO"):
            executed.append((statement.split()[2], executemany))

    async def record(flow_run: uuid.UUID, events: list[Any]) -> None:
        # two batches as the recorder flushes them: most Running events first, then the rest; run 10's Completed
        # comes in the first batch, before its Running (the recorder keeps the later state)
        first = [e for e in events if e.event.endswith("Running")][:-2] + [events[21]]
        await task_run_recorder.record_bulk_task_run_events(first)
        await task_run_recorder.record_bulk_task_run_events([e for e in events if e not in first])
        async with database.session_context(begin_transaction=True) as session:
            await models.logs.create_logs(session=session, logs=[
                schemas.actions.LogCreate(name="prefect.task_runs", level=20, message=f"Finished {i}",
                                          timestamp=events[0].occurred, flow_run_id=flow_run) for i in range(5)])

    async def logs(flow_run: uuid.UUID) -> list[str]:
        async with database.session_context() as session:
            rows = (await session.execute(sa.select(db_log.message).where(db_log.flow_run_id == flow_run))).all()
        return sorted(row[0] for row in rows)

    async def flow_run() -> uuid.UUID:
        async with database.session_context(begin_transaction=True) as session:
            flow = await models.flows.create_flow(session=session, flow=schemas.core.Flow(name="job"))
            run = await models.flow_runs.create_flow_run(session=session, flow_run=schemas.core.FlowRun(
                flow_id=flow.id, name=f"job-{uuid.uuid4().hex[:6]}"))
            return run.id

    db_log = database.Log

    async def scenario() -> None:
        theirs, ours = await flow_run(), await flow_run()
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
        try:
            await record(theirs, _task_run_events(theirs, 12, monkeypatch))
            before = list(executed)
            sqlite_tuning.install()
            executed.clear()
            await record(ours, _task_run_events(ours, 12, monkeypatch))
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
        assert await _task_run_rows(database, ours) == await _task_run_rows(database, theirs)
        runs, states = await _task_run_rows(database, ours)
        assert len(runs) == 12 and len(states) == 24 and sum('"FAILED"' in run for run in runs) == 1
        assert await logs(ours) == await logs(theirs) == [f"Finished {i}" for i in range(5)]
        assert {table for table, many in before if not many} == {"task_run", "task_run_state", "log"}
        assert not [table for table, many in before if many]  # Prefect's own: a many-VALUES INSERT per batch
        assert {table for table, many in executed if many} == {"task_run", "task_run_state", "log"}

    asyncio.run(scenario())
