"""The embedded server's SQLite event writer (deployments.sqlite_tuning) against Prefect's own, on a real Prefect
database in a temporary SQLite file: the same events give the same rows, and events stored already are skipped."""

from __future__ import annotations

import asyncio
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
