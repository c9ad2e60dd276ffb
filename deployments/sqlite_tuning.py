"""What the embedded server changes in Prefect's SQLite code paths (installed by ``server.serve_api`` only).

All three keep Prefect's semantics and change how the statements reach SQLite:

* **Write transactions begin IMMEDIATE.** Prefect begins most of them DEFERRED: one that reads and then writes
  while another connection has written meanwhile fails at once with SQLITE_BUSY (WAL mode; SQLite's busy timeout
  cannot help it), which Prefect answers 503 and its clients retry after 2 s, then 4 s... With 20 jobs submitted at
  once that was 26 503s on creating the runs (56 s to submit 20) and 13 on the worker's label updates. IMMEDIATE
  takes the write lock at the start, so a second writer waits its turn (Prefect's busy timeout, 60 s) instead:
  Prefect's own remedy (its ``with_for_update`` transactions), used for all of them.
* **Events are inserted as one statement run for many rows** (executemany) instead of one INSERT with a VALUES
  group per row. SQLAlchemy cannot reuse the compiled form of a many-VALUES INSERT across batches of other sizes,
  so the event persister compiled a new statement with a bind parameter per column per row for every batch: a
  distributed task's three state events carry 21 rows (the events and their related resources), and compiling
  them was about a quarter of the server's CPU in a 200-task round (py-spy). Prefect writes PostgreSQL's events
  this way already.
* **Task runs, their states and logs are inserted the same way.** Prefect's task-run recorder upserts each batch
  of task runs, then inserts their states, as one many-VALUES statement each, and the API inserts a request's logs
  so: compiling those was an eighth of the server's CPU while it recorded trivial task runs one after another (py-spy),
  and building their bind parameters more. Each now runs as its one-row statement for each row, compiled once (a
  session hook, :func:`_as_executemany`); Prefect's PostgreSQL recorder sends its rows as parameters too. Measured
  on the embedded server, its CPU per task run in three alternated pairs: 4.9-5.2 -> 4.2 ms with 2,000 task runs
  one after another; 5.0-5.6 -> 5.0-5.1 ms in rounds of 200 in flight, whose larger batches merge each run's two
  events already.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

# SQLite binds at most 32766 parameters per statement; executemany binds one row at a time, so batches only bound
# the size of the id lookup below
_LOOKUP_BATCH = 500


def install() -> None:
    """Apply these changes to this process's Prefect server modules (idempotent)."""
    _begin_immediate()
    _executemany_event_writes()
    _executemany_row_inserts()


def _begin_immediate() -> None:
    from prefect.server.database import configurations

    sqlite = getattr(configurations, "AioSqliteConfiguration", None)
    original = getattr(sqlite, "begin_transaction", None)
    if original is None or getattr(original, "qsflow_immediate", False):
        return

    def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> Any:
        return original(self, session, with_for_update=True)

    begin_transaction.qsflow_immediate = True  # type: ignore[attr-defined]
    sqlite.begin_transaction = begin_transaction  # type: ignore[union-attr]


async def write_sqlite_events(session: Any, events: list[Any]) -> None:
    """Insert the events not yet stored, with their related resources, as Prefect's SQLite writer does."""
    from prefect.server.database import provide_database_interface
    from prefect.types._datetime import now

    db = provide_database_interface()
    for start in range(0, len(events), _LOOKUP_BATCH):
        batch = events[start:start + _LOOKUP_BATCH]
        stored = set((await session.scalars(
            sa.select(db.Event.id).where(db.Event.id.in_({event.id for event in batch})))).all())
        fresh = [event for event in batch if event.id not in stored]
        if not fresh:
            continue
        # One creation time for the batch's rows: Prefect's column default computes it anew for each row of each
        # table, ~15% of this writer's CPU (two per row, a task run's event writes eight rows)
        written = now("UTC")
        stamp = {"created": written, "updated": written}
        await session.execute(sa.insert(db.Event.__table__),
                              [{**event.as_database_row(), **stamp} for event in fresh])
        resources = [{**row, **stamp} for event in fresh for row in event.as_database_resource_rows()]
        if resources:
            await session.execute(sa.insert(db.EventResource.__table__), resources)


def _executemany_event_writes() -> None:
    from prefect.server.events.storage import database

    if getattr(database, "_write_sqlite_events", None) is None:
        return  # a Prefect without this writer: keep its own
    database._write_sqlite_events = write_sqlite_events


# Tables whose many-row INSERTs Prefect's server builds as one statement with a VALUES group per row, every batch
# anew: the task-run recorder's task runs and their states, and the API's logs
_MANY_ROW_TABLES = frozenset({"task_run", "task_run_state", "log"})


def _as_executemany(state: Any) -> None:
    """An ORM ``do_orm_execute`` hook: a many-VALUES INSERT into one of ``_MANY_ROW_TABLES`` runs as the same
    INSERT for one row, executed for each row (executemany).

    SQLAlchemy compiles a many-VALUES INSERT for each batch (its compiled form holds a bind parameter per column
    per row, so it is not reused across batches of other sizes); the single-row form is compiled once and kept in
    SQLAlchemy's statement cache. The rows and the statement's ``ON CONFLICT`` clause are unchanged, so SQLite
    applies the same row changes (each statement's rows have distinct keys: the recorder coalesces its batch per
    task run first). Statements with ``RETURNING``, several ``values()`` calls or rows of different columns run as
    they are."""
    from sqlalchemy.dialects.sqlite.dml import Insert

    statement = state.statement
    if not (state.is_insert and isinstance(statement, Insert) and not statement._returning
            and len(statement._multi_values) == 1
            and getattr(statement.table, "name", None) in _MANY_ROW_TABLES):
        return
    rows = statement._multi_values[0]
    if len(rows) < 2 or not all(isinstance(row, dict) for row in rows):
        return
    params = [{getattr(column, "key", column): value for column, value in row.items()} for row in rows]
    columns = params[0].keys()
    if any(row.keys() != columns for row in params):
        return
    single = statement._generate()
    single._multi_values = ()
    state.statement = single
    state.parameters = params
    state.update_execution_options(dml_strategy="raw")


def _executemany_row_inserts() -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    if not event.contains(Session, "do_orm_execute", _as_executemany):
        event.listen(Session, "do_orm_execute", _as_executemany)
