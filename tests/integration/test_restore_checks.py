"""What a restore checks in the database it unpacked before the live one changes.

The backups here are sealed correctly (right passphrase, every byte authentic), but
the SQLite file inside was altered before sealing: damaged pages, rows the machine
keeps for itself, a schema that differs from the live one.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection

from bastion.backups import container, site_tables
from bastion.backups import service as backups
from bastion.backups.rules import BackupMetadata
from bastion.platform.db.engine import schema_revision
from bastion.platform.errors import InvalidInputError
from tests.integration.test_backup_restore import (
    ACTOR,
    PASSPHRASE,
    add_account,
    make_site,
    usernames,
)


def altered_backup(
    site: backups.BackupSite, work: Path, alter: Callable[[sqlite3.Connection], None]
) -> bytes:
    """A backup of `site` whose database was changed by `alter` before it was sealed."""
    snapshot = work / "snapshot.sqlite"
    site_tables.take(site.engine, site.metadata, snapshot, site.unseal_key)
    with sqlite3.connect(snapshot) as connection:
        alter(connection)
    connection.close()
    metadata = BackupMetadata(
        "1.0.0", schema_revision(site.engine) or "", "site.example", datetime.now(UTC)
    )
    out = io.BytesIO()
    with snapshot.open("rb") as raw:
        members = [(backups.DATABASE_MEMBER, site_tables.compressed(raw))]
        container.write_backup(out, metadata, members, PASSPHRASE)
    return out.getvalue()


def damage_a_page(connection: sqlite3.Connection) -> None:
    """Overwrite the b-tree page that holds the accounts table's rows."""
    connection.execute("PRAGMA journal_mode=DELETE")
    (root,) = connection.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'accounts'"
    ).fetchone()
    (page_size,) = connection.execute("PRAGMA page_size").fetchone()
    path = connection.execute("PRAGMA database_list").fetchone()[2]
    connection.commit()
    with open(path, "r+b") as raw:
        raw.seek((root - 1) * page_size)
        raw.write(b"\x0d\xff\xff\xff" + b"\xa5" * 60)


def source_and_target(tmp_path: Path) -> tuple[backups.BackupSite, backups.BackupSite]:
    source = make_site(tmp_path / "source")
    add_account(source, "alice")
    target = make_site(tmp_path / "target")
    add_account(target, "carol")
    return source, target


def test_a_backup_whose_database_is_damaged_changes_nothing(tmp_path: Path) -> None:
    source, target = source_and_target(tmp_path)
    data = altered_backup(source, tmp_path, damage_a_page)
    with pytest.raises(InvalidInputError, match="database is damaged") as raised:
        backups.restore(target, ACTOR, io.BytesIO(data), PASSPHRASE)
    assert "Nothing was changed" in str(raised.value)
    assert usernames(target) == ["carol"]


def test_rows_of_machine_tables_in_a_backup_are_not_restored(tmp_path: Path) -> None:
    source, target = source_and_target(tmp_path)

    def smuggle(connection: sqlite3.Connection) -> None:
        connection.execute(
            "INSERT INTO listen_addresses (host, port, enabled, created_at)"
            " VALUES ('192.0.2.99', 443, 1, '2026-01-01 00:00:00')"
        )

    data = altered_backup(source, tmp_path, smuggle)
    with sqlite3.connect(target.data_dir / "db" / "bastion.sqlite") as live:
        live.execute(
            "INSERT INTO listen_addresses (host, port, enabled, created_at)"
            " VALUES ('127.0.0.9', 8443, 1, '2026-01-01 00:00:00')"
        )
    live.close()
    backups.restore(target, ACTOR, io.BytesIO(data), PASSPHRASE)
    assert usernames(target) == ["alice"]
    with sqlite3.connect(target.data_dir / "db" / "bastion.sqlite") as live:
        addresses = live.execute("SELECT host, port FROM listen_addresses").fetchall()
    live.close()
    assert addresses == [("127.0.0.9", 8443)]


def test_a_backup_with_another_schema_restores_its_rows_without_its_schema(
    tmp_path: Path,
) -> None:
    """An object the live schema lacks (here a trigger) means the rows are copied into
    the live tables: the site comes back and the foreign object stays out."""
    source, target = source_and_target(tmp_path)

    def add_trigger(connection: sqlite3.Connection) -> None:
        connection.execute(
            "CREATE TRIGGER no_more_accounts BEFORE INSERT ON accounts"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )

    data = altered_backup(source, tmp_path, add_trigger)
    report = backups.restore(target, ACTOR, io.BytesIO(data), PASSPHRASE)
    assert usernames(target) == ["alice"] and report.rows["accounts"] == 1
    with sqlite3.connect(target.data_dir / "db" / "bastion.sqlite") as live:
        triggers = live.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        assert triggers.fetchall() == []
    live.close()
    add_account(target, "dave")
    assert usernames(target) == ["alice", "dave"]


def test_the_new_database_is_not_taken_while_a_reference_in_it_is_broken(
    tmp_path: Path,
) -> None:
    """The restore ends every session in the database it is about to copy in; if that
    did not happen, a session would point at an account the backup does not have."""
    source, target = source_and_target(tmp_path)
    add_account(target, "erin")  # the session's account; the backup has no such row
    snapshot = tmp_path / "snapshot.sqlite"
    site_tables.take(source.engine, source.metadata, snapshot, source.unseal_key)
    with sqlite3.connect(target.data_dir / "db" / "bastion.sqlite") as live:
        live.execute(
            "INSERT INTO web_sessions (token_hash, account_id, csrf_token, source, created_at,"
            " last_seen_at) SELECT 'h', id, 'c', '::1', '2026-01-01', '2026-01-01' FROM accounts"
            " WHERE username = 'erin'"
        )
    live.close()

    def keep_sessions(_connection: Connection) -> None:
        return None

    with pytest.raises(site_tables.SnapshotRefusedError, match="broken references"):
        site_tables.load(
            target.engine,
            target.metadata,
            snapshot,
            target.seal_key,
            before=keep_sessions,
            after=lambda _connection, _rows: None,
        )
    assert usernames(target) == ["carol", "erin"]


def test_readers_are_served_throughout_and_then_see_the_restored_site(tmp_path: Path) -> None:
    """A read transaction open during the restore goes on seeing the site it began with
    (and does not hold the restore up); the next one sees the restored site."""
    source, target = source_and_target(tmp_path)
    out = io.BytesIO()
    backups.write(source, out, PASSPHRASE)
    reader = sqlite3.connect(target.data_dir / "db" / "bastion.sqlite", isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT username FROM accounts").fetchall() == [("carol",)]
        out.seek(0)
        backups.restore(target, ACTOR, out, PASSPHRASE)
        assert reader.execute("SELECT username FROM accounts").fetchall() == [("carol",)]
        reader.execute("COMMIT")
        assert reader.execute("SELECT username FROM accounts").fetchall() == [("alice",)]
    finally:
        reader.close()


@pytest.fixture(params=[site_tables.PAGES_PER_STEP, 2], ids=["one step", "many steps"])
def pages_per_step(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The copy over the live file in one step (a small site) or in many (a large one)."""
    monkeypatch.setattr(site_tables, "PAGES_PER_STEP", request.param)
    return int(request.param)


def test_a_restore_copied_in_steps_brings_back_the_site(
    tmp_path: Path, pages_per_step: int
) -> None:
    source, target = source_and_target(tmp_path)
    out = io.BytesIO()
    backups.write(source, out, PASSPHRASE)
    out.seek(0)
    report = backups.restore(target, ACTOR, out, PASSPHRASE)
    assert usernames(target) == ["alice"] and report.automatic_backup.exists()


def test_when_the_automatic_backup_cannot_be_written_nothing_changes(
    tmp_path: Path, pages_per_step: int
) -> None:
    """The copy over the live file is not committed until the backup of the current
    site is written; here it cannot be (a file stands where its directory goes)."""
    source, target = source_and_target(tmp_path)
    out = io.BytesIO()
    backups.write(source, out, PASSPHRASE)
    out.seek(0)
    blocked = target.data_dir / backups.AUTOMATIC_DIR
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a directory")
    with pytest.raises(OSError):
        backups.restore(target, ACTOR, out, PASSPHRASE)
    assert usernames(target) == ["carol"]
    with sqlite3.connect(target.data_dir / "db" / "bastion.sqlite") as live:
        assert live.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    live.close()
