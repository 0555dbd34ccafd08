"""Database engine: SQLite in WAL mode by default, PostgreSQL by URL, same code."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, configure_mappers, sessionmaker
from sqlalchemy.pool import QueuePool

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # As many connections as worker threads may ask for at once (the server's 40, the
        # health probe's and the background tasks'), so that none waits for another's;
        # and as many kept open between requests: one opened again costs its pragmas and
        # a read of the schema at its first query, which under 50 concurrent API reads
        # was a tenth of their time.
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=50,
            max_overflow=10,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


RESERVED_CONNECTIONS = 10
"""Connections the pool keeps for the appliance's own work (the health probe, the
rollout, failover, backups) however many requests are in progress."""
UNBOUNDED_REQUESTS = 1_000_000
"""`requests_at_once` of a pool that cannot run out (one connection per thread, or one
shared)."""


def requests_at_once(engine: Engine) -> int:
    """How many requests may hold a unit of work at once (`platform.web.deps.get_uow`).

    A request holds its connection from its first statement until its unit of work
    closes, and takes worker threads meanwhile (its endpoint, then FastAPI's check of
    the answer). Were more requests admitted than the pool has connections, every thread
    could end up waiting for a connection while every connection waits for a thread:
    the site would stop answering until the pool's checkout timeout failed them all."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return UNBOUNDED_REQUESTS
    overflow = int(pool._max_overflow)  # no public accessor
    if overflow < 0:
        return UNBOUNDED_REQUESTS
    return max(1, pool.size() + overflow - RESERVED_CONNECTIONS)


def running_at_once(engine: Engine) -> int:
    """How many of the admitted requests run at once (`platform.admission`).

    SQLite's statements are CPU in this process, under the interpreter's one lock, as is
    the rest of a request's Python: two at once keep a thread busy while the other hands
    back, and more only add thread switches (`bench/bench_request_cpu.py`, 50 reads at
    once: 0.9-1.0 ms of CPU each with 2, 1.1-1.2 with 4, 1.5-1.6 with 40). A server database's
    statements wait on the network, with the lock released, so more run at once there."""
    return 2 if engine.dialect.name == "sqlite" else 8


STATEMENT_ON_THE_LOOP = "a database statement ran on the event loop"
_SEEN_AT_MOST = 1000


def watch_statements_on_the_loop(engine: Engine, seen: Callable[[str], None]) -> Callable[[], None]:
    """Call `seen` with each statement `engine` runs on a thread that runs an event loop
    (requests and background work run theirs on worker threads, which have none);
    returns what stops the watch."""

    def check(_connection: object, _cursor: object, statement: str, *_: object) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        seen(statement)

    event.listen(engine, "before_cursor_execute", check)
    return lambda: event.remove(engine, "before_cursor_execute", check)


def report_statements_on_the_loop(engine: Engine, log: logging.Logger) -> None:
    """Log each statement `engine` runs on an event loop's thread, once per place in the
    code. While such a statement waits (for a pooled connection, SQLite's write lock,
    PostgreSQL's round trip), every connection the loop serves waits with it: the site's
    pages, API, health checks and sessions. A line here names code that breaks this."""
    places: set[tuple[str, ...]] = set()

    def report(statement: str) -> None:
        where = _our_callers()
        if where in places or len(places) >= _SEEN_AT_MOST:
            return
        places.add(where)
        first = statement.strip().splitlines()[0][:100] if statement.strip() else ""
        code = " < ".join(where) or "outside the appliance"
        log.warning("%s: %s, from %s", STATEMENT_ON_THE_LOOP, first, code)

    watch_statements_on_the_loop(engine, report)


def _our_callers() -> tuple[str, ...]:
    """The innermost four frames of the appliance's own code that led here."""
    ours = [
        f"{Path(frame.filename).stem}.{frame.name}:{frame.lineno}"
        for frame in traceback.extract_stack()
        if "/bastion/" in frame.filename and not frame.filename.endswith("db/engine.py")
    ]
    return tuple(reversed(ours[-4:]))


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


SESSION_CONNECTION = "bastion.connection"
"""`Session.info` key: the connection the session's transaction holds, once it holds one
(`UnitOfWork.leaves_at_once` asks without taking one from the pool)."""


def session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(engine, expire_on_commit=False)
    event.listen(factory, "after_begin", _note_connection)
    return factory


def _note_connection(session: Session, _transaction: object, connection: Connection) -> None:
    session.info[SESSION_CONNECTION] = connection


def add_on(connection: Connection, *rows: object) -> None:
    """Add ORM rows inside a transaction the caller holds on `connection` (a restore, a
    factory reset); they are committed or rolled back with it."""
    with Session(bind=connection) as session:
        session.add_all(rows)
        session.flush()


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config  # imported late: Alembic is slow to import

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def prepare_migrations() -> None:
    """Import Alembic's runtime and read the revision scripts, touching no database.

    A process started early by an install (the new release's migration tool) does this
    before it waits to be told to begin, so that changes are paused only for the
    database work itself.
    """
    from alembic import command, config  # noqa: F401
    from alembic.runtime import environment, migration  # noqa: F401

    from bastion.platform.db import models  # noqa: F401  (the migrations' env.py imports it)

    known_revisions()
    configure_mappers()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision this build knows."""
    migrate_to(engine, "head")


def migrate_to(engine: Engine, revision: str) -> None:
    """Bring the schema to `revision` ("head" for the newest)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def known_revisions() -> set[str]:
    """Every schema revision this build can migrate from."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS))
    return {revision.revision for revision in script.walk_revisions()}


def current_head() -> str:
    """The newest schema revision this build knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    return head


def schema_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        try:
            row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
        except Exception:
            return None
    return None if row is None else str(row[0])


def database_size_bytes(engine: Engine) -> int:
    """Size of the stored data: the SQLite files, or what PostgreSQL reports."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database or ""
        return sum(p.stat().st_size for p in Path(database).parent.glob(Path(database).name + "*"))
    with engine.connect() as connection:
        return int(
            connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        )
