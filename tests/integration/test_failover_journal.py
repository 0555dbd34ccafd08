"""The change journal on a real SQLite database: a change and its journal entry commit or
roll back together; machine tables are not journaled; the triggers follow the tables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table

from bastion.entrypoints.compose import METADATA
from bastion.failover import journal
from bastion.platform.db.engine import make_engine, migrate


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'site.sqlite'}")
    migrate(engine)
    journal.ensure_triggers(engine, METADATA)
    yield engine
    engine.dispose()


def entries(engine: Engine) -> list[tuple[str, list[object], str]]:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT table_name, row_key, operation FROM failover_journal ORDER BY seq"
        ).all()
    return [(r[0], json.loads(r[1]), r[2]) for r in rows]


def test_a_change_and_its_entry_commit_together(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO settings (key, value) VALUES ('a', '1')")
        connection.exec_driver_sql("UPDATE settings SET value = '2' WHERE key = 'a'")
        connection.exec_driver_sql("DELETE FROM settings WHERE key = 'a'")
    assert entries(engine) == [
        ("settings", ["a"], "I"),
        ("settings", ["a"], "U"),
        ("settings", ["a"], "D"),
    ]


def test_a_change_rolled_back_leaves_no_entry(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.exec_driver_sql("INSERT INTO settings (key, value) VALUES ('a', '1')")
        connection.rollback()
    assert entries(engine) == []
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT COUNT(*) FROM settings").scalar_one() == 0


def test_a_changed_primary_key_records_the_old_key_and_the_new(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO settings (key, value) VALUES ('a', '1')")
        connection.exec_driver_sql("UPDATE settings SET key = 'b' WHERE key = 'a'")
    assert entries(engine)[1:] == [("settings", ["a"], "U"), ("settings", ["b"], "U")]


def test_machine_tables_are_not_journaled(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO sign_in_failures (username, failures, last_failure_at) "
            "VALUES ('x', 1, '2026-01-01 00:00:00')"
        )
    assert entries(engine) == []


def test_triggers_follow_the_tables_declared(engine: Engine) -> None:
    assert journal.ensure_triggers(engine, METADATA) == 0  # already in place
    grown = MetaData()
    for table in METADATA.sorted_tables:
        table.to_metadata(grown)
    Table("widgets", grown, Column("id", Integer, primary_key=True), Column("name", String(10)))
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT)")
    assert journal.ensure_triggers(engine, grown) == 3
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO widgets (id, name) VALUES (7, 'w')")
    assert entries(engine) == [("widgets", [7], "I")]
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE widgets")
    assert journal.ensure_triggers(engine, METADATA) == 0
    with engine.connect() as connection:
        query = "SELECT COUNT(*) FROM sqlite_master WHERE type='trigger' AND name LIKE ?"
        left = connection.exec_driver_sql(query, ("%widgets%",)).scalar_one()
    assert left == 0


def test_bounding_drops_the_oldest_and_raises_the_floor(engine: Engine) -> None:
    with engine.begin() as connection:
        for n in range(10):
            connection.exec_driver_sql(f"INSERT INTO settings (key, value) VALUES ('k{n}', '1')")
    with engine.begin() as connection:
        assert journal.bound(connection, keep=4) == 6
        assert journal.floor(connection) == 6
        assert journal.head(connection) == 10
        assert journal.prune_confirmed(connection, 8) == 2
        assert journal.bound(connection, keep=0) == 2
        assert journal.floor(connection) == 10


def test_a_restart_gives_a_new_epoch(engine: Engine) -> None:
    with engine.begin() as connection:
        first = journal.epoch(connection)
        connection.exec_driver_sql("INSERT INTO settings (key, value) VALUES ('a', '1')")
    journal.restart(engine)
    with engine.begin() as connection:
        assert journal.epoch(connection) != first
    assert entries(engine) == []


def test_without_a_backup_the_journal_is_emptied_as_it_is_tended(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO settings (key, value) VALUES ('a', '1')")
    assert journal.tend(engine, keeps_for_backup=True) == 0
    assert journal.tend(engine, keeps_for_backup=False) == 1
    assert entries(engine) == []
