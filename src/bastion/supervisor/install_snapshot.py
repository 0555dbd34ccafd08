"""The database snapshot an install takes before migrations, and putting it back.

SQLite: SQLite's online backup API, both ways. A copy taken while the old
version keeps reading is consistent; putting it back writes the live file in
one transaction, so a crash during the restore leaves the migrated database,
and the restart restores again. PostgreSQL: `pg_dump` in custom format, and
its script run by `psql` in a single transaction after the schema's tables are dropped.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from bastion.platform.settings import ApplianceSettings


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
        _restore_postgresql(settings, snapshot_file)
        return
    try:
        with (
            closing(sqlite3.connect(snapshot_file)) as copy,
            closing(sqlite3.connect(path, timeout=30)) as live,
        ):
            copy.backup(live)
    except sqlite3.Error as error:
        raise SnapshotError(f"putting the database snapshot back failed: {error}") from None


# Tables the new release's migrations created are not in the dump, so --clean would keep
# them: drop every table of the schema first, in the same transaction as the restore.
_DROP_TABLES = """
DO $$ DECLARE t record; BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', t.tablename);
  END LOOP;
END $$;
"""


def _restore_postgresql(settings: ApplianceSettings, dump: Path) -> None:
    script = dump.with_suffix(".sql")
    _run(
        [_tool("pg_restore"), "--no-owner", "--clean", "--if-exists", f"--file={script}", str(dump)]
    )
    _run(
        [
            _tool("psql"),
            "--single-transaction",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            f"--dbname={_pg_url(settings)}",
            f"--command={_DROP_TABLES}",
            f"--file={script}",
        ]
    )


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
