"""When leaving a unit of work may skip the worker thread, on a real SQLite database:
only when it cannot wait on the database (nothing written, or nothing touched)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from bastion.platform import audit
from bastion.platform.db.engine import make_engine, migrate, session_factory
from bastion.platform.db.models import AuditEntry
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork

ACTOR = Actor(None, "test")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'bastion.sqlite'}")
    migrate(engine)
    yield engine
    engine.dispose()


def test_a_unit_that_touched_nothing_or_only_read_leaves_at_once(engine: Engine) -> None:
    with UnitOfWork(session_factory(engine)) as uow:
        assert uow.leaves_at_once()
        uow.audit.count("account.create")
        assert uow.session.in_transaction()  # a read begins the session's transaction
        assert uow.leaves_at_once()  # but SQLite's only at the first write
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_unit_begun_without_a_statement_leaves_at_once_and_takes_no_connection(
    engine: Engine,
) -> None:
    with UnitOfWork(session_factory(engine)) as uow:
        uow.session.add(AuditEntry(action="test.pending", target="", actor="test"))
        assert uow.session.in_transaction()
        assert uow.leaves_at_once()  # the rollback only forgets the pending row
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with UnitOfWork(session_factory(engine)) as uow:
        assert uow.audit.count("test.pending") == 0


def test_a_unit_that_wrote_does_not(engine: Engine) -> None:
    with UnitOfWork(session_factory(engine)) as uow:
        audit.record(uow, ACTOR, "test.write", "ünïcode target")
        uow.session.flush()
        assert not uow.leaves_at_once()
        uow.commit()
        assert uow.leaves_at_once()  # committed: nothing is left to wait for
    with UnitOfWork(session_factory(engine)) as uow:
        assert uow.audit.count("test.write") == 1


def test_a_unit_that_took_the_write_lock_does_not(engine: Engine) -> None:
    with UnitOfWork(session_factory(engine)) as uow:
        uow.writing()
        assert not uow.leaves_at_once()


def test_a_write_in_progress_elsewhere_does_not_hold_up_a_reader_leaving(engine: Engine) -> None:
    with engine.connect() as writer:
        writer.execute(text("BEGIN IMMEDIATE"))
        with UnitOfWork(session_factory(engine)) as uow:
            uow.audit.count("account.create")
            assert uow.leaves_at_once()
        writer.rollback()
