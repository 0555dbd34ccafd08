"""The snapshot a backup holds, taken from a live SQLite site while others read and write.

The snapshot is the database file itself when its write-ahead log can be emptied, or
SQLite's online backup when a reader or a writer keeps the log from being emptied; either
way it holds exactly what was committed when it was taken.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from bastion.backups import service as backups
from bastion.backups import site_tables
from tests.integration.test_backup_restore import make_site

ROW = "INSERT INTO audit_log (at, actor, action, target, details, source) VALUES (?,?,?,?,?,?)"


def row(number: int, details: str = "{}") -> tuple[str, ...]:
    return ("2026-01-01 00:00:00", "writer", "test.row", str(number), details, "127.0.0.1")


def live_connection(site: backups.BackupSite) -> sqlite3.Connection:
    return sqlite3.connect(site.engine.url.database or "", timeout=30, isolation_level=None)


def rows_in(snapshot: Path) -> int:
    with closing(sqlite3.connect(snapshot)) as connection:
        query = "SELECT COUNT(*) FROM audit_log WHERE action = 'test.row'"
        return int(connection.execute(query).fetchone()[0])


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """The files copied whole (the snapshot taken from the file itself)."""
    copied: list[Path] = []
    copy = shutil.copyfile

    def recorded(source: Any, target: Any, **options: Any) -> Any:
        copied.append(Path(source))
        return copy(source, target, **options)

    monkeypatch.setattr(shutil, "copyfile", recorded)
    yield copied


@pytest.fixture
def site(tmp_path: Path) -> backups.BackupSite:
    return make_site(tmp_path / "site")


def add_rows(site: backups.BackupSite, count: int) -> None:
    with closing(live_connection(site)) as writer:
        writer.executemany(ROW, [row(n) for n in range(count)])


def snapshot(site: backups.BackupSite, target: Path) -> Path:
    backups.take_snapshot(site, target)
    site_tables.check(target)
    return target


def test_an_idle_site_is_copied_from_its_file_and_holds_every_commit(
    site: backups.BackupSite, tmp_path: Path, copies: list[Path]
) -> None:
    add_rows(site, 50)
    assert rows_in(snapshot(site, tmp_path / "snapshot.sqlite")) == 50
    assert copies == [Path(site.engine.url.database or "")]


def test_commits_a_reader_keeps_in_the_log_are_in_the_snapshot(
    site: backups.BackupSite, tmp_path: Path, copies: list[Path]
) -> None:
    with closing(live_connection(site)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM audit_log").fetchone()  # holds the log back
        add_rows(site, 100)
        assert rows_in(snapshot(site, tmp_path / "snapshot.sqlite")) == 100
        reader.execute("ROLLBACK")
    assert copies == []  # the file alone did not hold them: SQLite's online backup did


def test_a_transaction_still_open_is_not_in_the_snapshot(
    site: backups.BackupSite, tmp_path: Path, copies: list[Path]
) -> None:
    add_rows(site, 10)
    with closing(live_connection(site)) as writer:
        writer.execute("PRAGMA cache_size=10")  # its pages go out to the log before it ends
        writer.execute("BEGIN IMMEDIATE")
        writer.executemany(ROW, [row(n, "x" * 2000) for n in range(2000)])
        assert rows_in(snapshot(site, tmp_path / "snapshot.sqlite")) == 10
        writer.execute("ROLLBACK")
    assert copies == []


def test_snapshots_taken_while_a_writer_commits_are_each_one_whole_state(
    site: backups.BackupSite, tmp_path: Path, copies: list[Path]
) -> None:
    """Every transaction adds two rows: a snapshot with an odd count caught half of one."""
    stop = threading.Event()
    committed = [0]

    def write() -> None:
        with closing(live_connection(site)) as writer:
            while not stop.is_set():
                with writer:
                    writer.execute("BEGIN IMMEDIATE")
                    number = committed[0]
                    writer.executemany(ROW, [row(number), row(number + 1)])
                committed[0] = number + 2
                time.sleep(0.003)

    writing = threading.Thread(target=write)
    writing.start()
    counts = []  # rows committed before each snapshot began, and rows it holds
    try:
        for index in range(20):
            before = committed[0]
            counts.append((before, rows_in(snapshot(site, tmp_path / f"{index}.sqlite"))))
    finally:
        stop.set()
        writing.join()
    for before, found in counts:
        assert found % 2 == 0 and found >= before
    assert copies, "no snapshot was copied from the file while the writer paused"
