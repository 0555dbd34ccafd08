"""The failover change journal on a real PostgreSQL server: each change is journaled by
its trigger, a reader never goes past a change that has yet to commit, and a backup on
PostgreSQL applies changes without losing the children of a changed row."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text

from bastion.entrypoints import compose
from bastion.failover import changes, journal
from bastion.platform.db.engine import migrate
from bastion.platform.runtime import Runtime
from bastion.platform.settings import ApplianceSettings
from tests.integration.test_failover_changes import add_account
from tests.support.postgres import PostgresServer, available_server

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with available_server() as running:
        yield running


def site(server: PostgresServer, tmp_path: Path, name: str) -> Runtime:
    """A migrated, journaled site in a database of its own."""
    url = SecretStr(server.create_database(name))
    runtime = compose.build(ApplianceSettings(data_dir=tmp_path / name, database_url=url))
    migrate(runtime.engine)
    return runtime


def entries(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT table_name, row_key, operation FROM failover_journal ORDER BY seq")
        )
        return [(r.table_name, r.row_key, r.operation) for r in rows]


def unchanged(value: bytes, _bound_to: str) -> bytes:
    return value


def test_each_change_is_journaled_by_its_trigger(server: PostgresServer, tmp_path: Path) -> None:
    runtime = site(server, tmp_path, "journaled")
    engine = runtime.engine
    try:
        made = journal.ensure_triggers(engine, compose.METADATA)
        assert made == len(journal.journaled_tables(compose.METADATA))
        assert journal.ensure_triggers(engine, compose.METADATA) == 0  # a second start
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM failover_journal"))
            connection.execute(text("INSERT INTO settings (key, value) VALUES ('ä', '1')"))
            connection.execute(text("UPDATE settings SET value = '2' WHERE key = 'ä'"))
            connection.execute(text("UPDATE settings SET key = 'b' WHERE key = 'ä'"))
            connection.execute(text("DELETE FROM settings WHERE key = 'b'"))
        add_account(engine, 2**31 - 1, "zoë")
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO account_jump_groups VALUES (:id, 'east')"), {"id": 2**31 - 1}
            )
        found = [(t, json.loads(k), o) for t, k, o in entries(engine)]
        assert found == [
            ("settings", ["ä"], "I"),
            ("settings", ["ä"], "U"),
            ("settings", ["ä"], "U"),  # a changed key: the old one, then the new
            ("settings", ["b"], "U"),
            ("settings", ["b"], "D"),
            ("accounts", [2**31 - 1], "I"),
            ("account_jump_groups", [2**31 - 1, "east"], "I"),
        ]
        with engine.connect() as connection:
            assert journal.head(connection) >= len(found)
    finally:
        engine.dispose()


def test_a_batch_waits_for_a_change_that_has_yet_to_commit(
    server: PostgresServer, tmp_path: Path
) -> None:
    """The entry of a transaction still open has the lower number; a batch read while it
    is open must not move the backup past it."""
    runtime = site(server, tmp_path, "concurrent")
    engine = runtime.engine
    journal.ensure_triggers(engine, compose.METADATA)
    try:
        with engine.begin() as connection:
            epoch, since = journal.epoch(connection), journal.head(connection)
        late = engine.connect()
        late.begin()
        late.execute(text("INSERT INTO settings (key, value) VALUES ('late', '1')"))
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO settings (key, value) VALUES ('early', '1')"))
        read: list[changes.Batch] = []
        reader = threading.Thread(
            target=lambda: read.append(
                changes.read(engine, compose.METADATA, epoch, since, unchanged)
            )
        )
        reader.start()
        reader.join(1.0)
        waited = reader.is_alive()
        late.commit()
        late.close()
        reader.join(10)
        assert waited, "the batch was read past a change that had yet to commit"
        batch = read[0]
        keys = [k[0] for k in batch.tables["settings"]["keys"]]
        assert sorted(keys) == ["early", "late"] and batch.through == batch.head
    finally:
        engine.dispose()


def pull(primary: Engine, backup: Engine) -> None:
    """What a backup's sync does with the rows: every batch since its position."""
    with primary.connect() as connection:
        epoch = journal.epoch(connection)
        connection.commit()
    _, since = changes.position(backup)
    while True:
        batch = changes.read(primary, compose.METADATA, epoch, since, unchanged)
        changes.apply(backup, compose.METADATA, batch, epoch, unchanged)
        since = batch.through
        if batch.through >= batch.head:
            return


def rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(sql))]


def test_a_backup_on_postgresql_keeps_the_children_of_a_changed_row(
    server: PostgresServer, tmp_path: Path
) -> None:
    primary, backup = (site(server, tmp_path, name).engine for name in ("primary", "backup"))
    for engine in (primary, backup):
        journal.ensure_triggers(engine, compose.METADATA)
    try:
        add_account(primary, 7, "ana")
        add_account(primary, 8, "ben")
        with primary.begin() as connection:
            connection.execute(text("INSERT INTO account_jump_groups VALUES (7, 'east')"))
        pull(primary, backup)
        groups = "SELECT account_id, jump_group FROM account_jump_groups"
        assert rows(backup, groups) == [(7, "east")]

        with primary.begin() as connection:  # the parent changes; its child does not
            connection.execute(text("UPDATE accounts SET display_name = 'Ana' WHERE id = 7"))
        pull(primary, backup)
        assert rows(backup, "SELECT display_name FROM accounts WHERE id = 7") == [("Ana",)]
        assert rows(backup, groups) == [(7, "east")]

        # the backup's serial counter moved past the ids it was sent: once it is the
        # primary, a new account does not collide with them
        with backup.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO accounts (username, display_name, role, password_hash, "
                    "must_change_password, disabled, created_at) VALUES "
                    "('new', 'new', 'representative', 'x', false, false, now())"
                )
            )
        assert rows(backup, "SELECT id FROM accounts WHERE username = 'new'") == [(9,)]
        with backup.begin() as connection:
            connection.execute(text("DELETE FROM accounts WHERE username = 'new'"))

        with primary.begin() as connection:  # two accounts swap their names
            connection.execute(text("UPDATE accounts SET username = 'tmp' WHERE id = 7"))
            connection.execute(text("UPDATE accounts SET username = 'ana' WHERE id = 8"))
            connection.execute(text("UPDATE accounts SET username = 'ben' WHERE id = 7"))
        before = rows(backup, "SELECT id, username FROM accounts ORDER BY id")
        with pytest.raises(changes.SnapshotNeededError, match="uq_accounts_username"):
            pull(primary, backup)
        assert rows(backup, "SELECT id, username FROM accounts ORDER BY id") == before

        with primary.begin() as connection:  # the parent goes, and its child with it
            connection.execute(text("DELETE FROM accounts WHERE id = 7"))
        backup_site = site(server, tmp_path, "fresh").engine  # as after a snapshot
        journal.ensure_triggers(backup_site, compose.METADATA)
        try:
            pull(primary, backup_site)
            assert rows(backup_site, "SELECT id, username FROM accounts") == [(8, "ana")]
            assert rows(backup_site, groups) == []
        finally:
            backup_site.dispose()
    finally:
        primary.dispose()
        backup.dispose()


def test_a_worker_and_a_console_starting_at_once_write_the_journal_triggers_once(
    server: PostgresServer, tmp_path: Path
) -> None:
    """Each process that opens a site writes the journal's function and triggers where
    they are missing; several doing it at once on a fresh database (a worker and a
    console) must all start, and leave one function and one trigger a table."""
    runtime = site(server, tmp_path, "at_once")
    engines = [
        compose.build(
            ApplianceSettings(
                data_dir=tmp_path / f"at_once-{n}", database_url=SecretStr(server.url("at_once"))
            )
        ).engine
        for n in range(4)
    ]
    for _ in range(3):
        with runtime.engine.begin() as connection:
            connection.execute(text(f"DROP FUNCTION IF EXISTS {journal.PG_FUNCTION}() CASCADE"))
        start = threading.Barrier(len(engines))
        failed: list[BaseException] = []

        def open_site(
            engine: Engine, start: threading.Barrier, failed: list[BaseException]
        ) -> None:
            start.wait()
            try:
                journal.ensure_triggers(engine, compose.METADATA)
            except BaseException as error:
                failed.append(error)

        threads = [threading.Thread(target=open_site, args=(e, start, failed)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not failed, failed
        with runtime.engine.connect() as connection:
            functions = connection.execute(
                text("SELECT count(*) FROM pg_proc WHERE proname = :name"),
                {"name": journal.PG_FUNCTION},
            ).scalar()
            triggers = connection.execute(
                text(
                    "SELECT count(*), count(DISTINCT tgrelid) FROM pg_trigger "
                    "WHERE tgname LIKE 'failover_journal_%' AND NOT tgisinternal"
                )
            ).one()
        assert functions == 1 and triggers[0] == triggers[1] > 0
        assert journal.ensure_triggers(runtime.engine, compose.METADATA) == 0
    for engine in [runtime.engine, *engines]:
        engine.dispose()
