"""The snapshot a backup holds, taken from a live SQLite site while others read and write:
exactly what was committed when it was taken, and nothing taken from under the others.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from bastion.backups import service as backups
from bastion.backups import site_tables
from tests.integration.test_backup_restore import make_site

OPEN_AND_CLOSE = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
    " c.execute('SELECT COUNT(*) FROM sqlite_master').fetchone(); c.close()"
)
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
def site(tmp_path: Path) -> backups.BackupSite:
    return make_site(tmp_path / "site")


def add_rows(site: backups.BackupSite, count: int) -> None:
    with closing(live_connection(site)) as writer:
        writer.executemany(ROW, [row(n) for n in range(count)])


def snapshot(site: backups.BackupSite, target: Path) -> Path:
    backups.take_snapshot(site, target)
    site_tables.check(target)
    return target


def test_a_snapshot_leaves_the_locks_of_this_process_in_place(
    site: backups.BackupSite, tmp_path: Path
) -> None:
    """A connection of another process that closes must not take itself for the last one
    (and remove the write-ahead log) while this process still has the database open: a
    snapshot that opened and closed the database file itself would drop this process's
    locks on it."""
    database = Path(site.engine.url.database or "")
    log = database.with_name(database.name + "-wal")
    with closing(live_connection(site)) as holder:
        holder.execute("SELECT COUNT(*) FROM accounts").fetchone()  # the database open here
        add_rows(site, 5)
        snapshot(site, tmp_path / "snapshot.sqlite")
        assert log.exists()
        subprocess.run([sys.executable, "-c", OPEN_AND_CLOSE, str(database)], check=True)
        assert log.exists(), "another process removed the log from under this one"
        add_rows(site, 5)
    assert rows_in(snapshot(site, tmp_path / "after.sqlite")) == 10


def test_commits_a_reader_keeps_in_the_log_are_in_the_snapshot(
    site: backups.BackupSite,
    tmp_path: Path,
) -> None:
    with closing(live_connection(site)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM audit_log").fetchone()  # holds the log back
        add_rows(site, 100)
        assert rows_in(snapshot(site, tmp_path / "snapshot.sqlite")) == 100
        reader.execute("ROLLBACK")


def test_a_transaction_still_open_is_not_in_the_snapshot(
    site: backups.BackupSite,
    tmp_path: Path,
) -> None:
    add_rows(site, 10)
    with closing(live_connection(site)) as writer:
        writer.execute("PRAGMA cache_size=10")  # its pages go out to the log before it ends
        writer.execute("BEGIN IMMEDIATE")
        writer.executemany(ROW, [row(n, "x" * 2000) for n in range(2000)])
        assert rows_in(snapshot(site, tmp_path / "snapshot.sqlite")) == 10
        writer.execute("ROLLBACK")


def test_snapshots_taken_while_a_writer_commits_are_each_one_whole_state(
    site: backups.BackupSite,
    tmp_path: Path,
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


def test_scratch_files_are_never_synced_and_the_live_database_is(
    site: backups.BackupSite, tmp_path: Path
) -> None:
    """A scratch file is deleted once used: syncing it wrote hundreds of MB to the disk
    inside a restore for nothing. The live database keeps its own setting."""
    scratch = site_tables.sqlite_engine(tmp_path / "scratch.sqlite")
    try:
        with scratch.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar_one() == 0
    finally:
        scratch.dispose()
    with closing(site_tables.scratch_connection(tmp_path / "other.sqlite")) as connection:
        assert connection.execute("PRAGMA synchronous").fetchone() == (0,)
    with site.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL
