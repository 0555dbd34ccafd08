"""The database snapshot an install takes before migrations, and putting it back.

SQLite: SQLite's online backup API, both ways. A copy taken while the old
version keeps reading is consistent; putting it back writes the live file in
one transaction, so a crash during the restore leaves the migrated database,
and the restart restores again. PostgreSQL: `pg_dump` in custom format, and
`pg_restore --clean` in a single transaction.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from bastion.settings import ApplianceSettings


class SnapshotError(Exception):
    """The snapshot could not be taken or put back; the message says why."""


def size_bytes(settings: ApplianceSettings) -> int:
    """What an install must copy: the SQLite file (0 when PostgreSQL is used)."""
    path = _sqlite_path(settings)
    if path is None:
        return 0
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def snapshot(settings: ApplianceSettings, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = _sqlite_path(settings)
    if path is None:
        target = out / "database.pgdump"
        _run([_tool("pg_dump"), "--format=custom", f"--file={target}", _pg_url(settings)])
        return target
    target = out / "database.sqlite"
    target.unlink(missing_ok=True)
    try:
        with closing(sqlite3.connect(path)) as live, closing(sqlite3.connect(target)) as copy:
            live.backup(copy)
    except sqlite3.Error as error:
        raise SnapshotError(f"the database snapshot failed: {error}") from None
    return target


def restore(settings: ApplianceSettings, snapshot_file: Path) -> None:
    if not snapshot_file.is_file():
        raise SnapshotError(f"the database snapshot {snapshot_file} is missing")
    path = _sqlite_path(settings)
    if path is None:
        _run(
            [
                _tool("pg_restore"),
                "--clean",
                "--if-exists",
                "--single-transaction",
                "--no-owner",
                f"--dbname={_pg_url(settings)}",
                str(snapshot_file),
            ]
        )
        return
    try:
        with (
            closing(sqlite3.connect(snapshot_file)) as copy,
            closing(sqlite3.connect(path, timeout=30)) as live,
        ):
            copy.backup(live)
    except sqlite3.Error as error:
        raise SnapshotError(f"putting the database snapshot back failed: {error}") from None


def _sqlite_path(settings: ApplianceSettings) -> Path | None:
    if settings.database_url is not None:
        return None
    return (settings.db_dir / "bastion.sqlite").resolve()


def _pg_url(settings: ApplianceSettings) -> str:
    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SnapshotError(
            f"{name} is not installed; it is needed to snapshot a PostgreSQL database "
            "before an install. Install the PostgreSQL client tools."
        )
    return found


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SnapshotError(f"{Path(command[0]).name} failed: {result.stderr.strip()[-500:]}")
