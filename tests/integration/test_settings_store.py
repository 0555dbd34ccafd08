"""The settings table under concurrent changes, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bastion.platform.db.engine import make_engine, migrate, session_factory
from bastion.platform.unit_of_work import UnitOfWork
from tests.support.postgres import available_server

WRITERS = 8


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'settings.sqlite'}")
        migrate(engine)
        yield session_factory(engine)
        engine.dispose()
        return
    with available_server() as server:
        engine = make_engine(server.url())
        migrate(engine)
        yield session_factory(engine)
        engine.dispose()


def test_a_key_set_by_many_at_once_for_the_first_time_is_set_by_all(
    sessions: sessionmaker[Session],
) -> None:
    """Each writer has read that the key is not there; each one's change succeeds."""
    errors: list[BaseException] = []
    together = threading.Barrier(WRITERS)

    def write(value: int) -> None:
        try:
            with UnitOfWork(sessions) as uow:
                assert uow.settings.get("test.race") is None
                together.wait(timeout=60)
                uow.settings.set("test.race", {"writer": value})
                uow.commit()
        except BaseException as error:  # any failure of a writer is the finding
            errors.append(error)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert errors == []
    with UnitOfWork(sessions) as uow:
        assert uow.settings.get("test.race")["writer"] in range(WRITERS)


def test_a_change_is_read_back_at_once_and_undone_with_its_transaction(
    sessions: sessionmaker[Session],
) -> None:
    with UnitOfWork(sessions) as uow:
        uow.settings.set("test.value", "first")
        uow.commit()
    with UnitOfWork(sessions) as uow:
        assert uow.settings.get("test.value") == "first"
        uow.settings.set("test.value", "second")
        assert uow.settings.get("test.value") == "second"
    with UnitOfWork(sessions) as uow:  # not committed: rolled back
        assert uow.settings.get("test.value") == "first"
