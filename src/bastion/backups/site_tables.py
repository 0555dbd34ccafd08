"""Site data as a SQLite file, and back: the database part of a backup.

The snapshot is a SQLite database holding the site tables at the schema revision
they were taken at (its `alembic_version` travels with it), so an older snapshot
is brought forward by the same migrations as the appliance itself.

- From SQLite, the snapshot is SQLite's online backup of the live database (one
  consistent copy while the appliance keeps serving), with machine state removed.
- From PostgreSQL, the site tables are copied row by row in one REPEATABLE READ
  transaction into a new SQLite file migrated to the same revision.

Loading replaces the site tables of the live database in one transaction, so a
restore is all-or-nothing. On SQLite, when the snapshot has the live schema object for
object, the snapshot is finished as the new database file (machine rows taken from the
live one) and copied over the live file with SQLite's online backup; otherwise the
rows are deleted and inserted. Private keys travel unsealed inside the (encrypted)
backup and are sealed again with the receiving appliance's own key vault.

Which tables are machine state and which columns are sealed is declared where each
capability defines its tables (``info={"machine": True}`` on a table,
``info={"sealed_with": COLUMN}`` on a column), so this module names none of them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import zstandard
from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    MetaData,
    Table,
    bindparam,
    delete,
    event,
    insert,
    inspect,
    select,
    update,
)

from bastion.backups.rules import BackupError
from bastion.platform.db.engine import make_engine, migrate_to, schema_revision

BATCH = 2000

KeyTransform = Callable[[bytes, str], bytes]


@dataclass(frozen=True)
class SealedColumn:
    """A column sealed per row by the key vault, with the column the seal is bound to."""

    table: str
    column: str
    bound_to: str


def machine_tables(metadata: MetaData) -> list[Table]:
    """Machine state and short-lived secrets: they stay with the machine."""
    return [t for t in metadata.sorted_tables if t.info.get("machine")]


def sealed_columns(metadata: MetaData) -> list[SealedColumn]:
    return [
        SealedColumn(table.name, column.name, column.info["sealed_with"])
        for table in metadata.sorted_tables
        for column in table.columns
        if "sealed_with" in column.info
    ]


def site_tables(metadata: MetaData) -> list[Table]:
    """Tables in dependency order (parents first)."""
    return [t for t in metadata.sorted_tables if not t.info.get("machine")]


def sqlite_engine(path: Path) -> Engine:
    """An engine on a scratch file (a snapshot being taken, unpacked or migrated)."""
    engine = make_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", _unsynced)
    return engine


def scratch_connection(path: Path) -> sqlite3.Connection:
    """A plain connection to a scratch file."""
    connection = sqlite3.connect(path, timeout=30)
    _unsynced(connection)
    return connection


def _unsynced(dbapi_connection: Any, _record: object = None) -> None:
    """A scratch file is deleted once used, and nothing reads it after a crash, so
    nothing waits for it to reach the disk: otherwise the last connection closed syncs
    it whole (hundreds of MB written out for nothing, beside the restore's own writes)."""
    dbapi_connection.execute("PRAGMA synchronous=OFF")


# -- taking a snapshot -----------------------------------------------------------


def take(engine: Engine, metadata: MetaData, target: Path, unseal: KeyTransform) -> dict[str, int]:
    """Write the site's snapshot to `target` (a new file); returns rows per table."""
    if engine.dialect.name == "sqlite":
        _copy_sqlite_file(engine, target)
        scratch = sqlite_engine(target)
        with scratch.begin() as connection:
            present = set(inspect(connection).get_table_names())
            for table in machine_tables(metadata):
                if table.name in present:  # not in a database of an older schema
                    connection.execute(delete(table))
    else:
        scratch = sqlite_engine(target)
        migrate_to(scratch, schema_revision(engine) or "head")
        _copy_rows(engine, scratch, site_tables(metadata))
    try:
        with scratch.begin() as connection:
            _transform_sealed(connection, metadata, unseal)
            return _counts(connection, metadata)
    finally:
        scratch.dispose()


def _copy_sqlite_file(engine: Engine, target: Path) -> None:
    """SQLite's online backup: one consistent copy, taken while others keep writing.

    Not a copy of the file's bytes: closing a descriptor of the database file in this
    process would drop every lock SQLite holds on it here (POSIX locks belong to the
    process), and a connection of another process closing then takes itself for the
    last one and removes the write-ahead log from under the others."""
    source = engine.url.database or ""
    with closing(sqlite3.connect(source)) as live, closing(scratch_connection(target)) as copy:
        live.backup(copy)


def _copy_rows(source: Engine, target: Engine, tables: list[Table]) -> None:
    options = {"isolation_level": "REPEATABLE READ"}
    reading = source.connect().execution_options(**options)
    with reading as reader, reader.begin(), target.begin() as writer:
        for table in tables:
            _copy_table(reader, writer, table)


def _copy_table(reader: Connection, writer: Connection, table: Table) -> None:
    result = reader.execution_options(yield_per=BATCH).execute(select(table))
    for rows in result.mappings().partitions(BATCH):
        writer.execute(insert(table), [dict(row) for row in rows])


def _transform_sealed(connection: Connection, metadata: MetaData, transform: KeyTransform) -> None:
    present = set(inspect(connection).get_table_names())
    for sealed in sealed_columns(metadata):
        if sealed.table not in present:
            continue  # a snapshot from before the table existed
        table = metadata.tables[sealed.table]
        key, bound = table.c[sealed.column], table.c[sealed.bound_to]
        rows = connection.execute(select(table.c.id, key, bound).where(key.is_not(None))).all()
        changed = [{"row_id": r.id, "value": transform(r[1], r[2])} for r in rows]
        if changed:
            statement = update(table).where(table.c.id == bindparam("row_id"))
            connection.execute(statement.values({sealed.column: bindparam("value")}), changed)


def _counts(connection: Connection, metadata: MetaData) -> dict[str, int]:
    present = set(inspect(connection).get_table_names())
    return {
        t.name: int(connection.exec_driver_sql(f"SELECT COUNT(*) FROM {t.name}").scalar_one())
        for t in site_tables(metadata)
        if t.name in present
    }


# -- loading a snapshot -----------------------------------------------------------


class SnapshotRefusedError(BackupError):
    """The backup's database fails a check; nothing was changed."""


def load(
    engine: Engine,
    metadata: MetaData,
    snapshot: Path,
    seal: KeyTransform,
    before: Callable[[Connection], Any],
    after: Callable[[Connection, dict[str, int]], Any],
    before_commit: Callable[[], Any] = lambda: None,
) -> dict[str, int]:
    """Replace the live site tables with the snapshot's (already at the live revision).

    In the same transaction, `before` runs on the machine's live sessions and tables as
    they were, and `after` on the restored ones, with the rows per table. The live
    database is committed only once `before_commit` has returned; if it raises, nothing
    changes."""
    if engine.dialect.name == "sqlite":
        live = Path(engine.url.database or "")
        if _same_layout(live, snapshot):
            counts = _complete(metadata, live, snapshot, seal, before, after)
            _copy_over(snapshot, live, before_commit)
            return counts
    return _replace_rows(engine, metadata, snapshot, seal, before, after, before_commit)


def _same_layout(live: Path, snapshot: Path) -> bool:
    """The snapshot has the live database's schema, object for object, and page size.

    Otherwise (a schema that came to the same revision by another path, another page
    size) the rows are copied into the live tables instead; slower, same outcome."""
    with (
        closing(sqlite3.connect(live, timeout=30)) as live_connection,
        closing(scratch_connection(snapshot)) as snapshot_connection,
    ):
        return _layout(live_connection) == _layout(snapshot_connection)


def _layout(connection: sqlite3.Connection) -> tuple[object, ...]:
    query = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
    page_size = connection.execute("PRAGMA page_size").fetchone()
    return (page_size, connection.execute(query).fetchall())


def check(snapshot: Path) -> None:
    """SQLite's own check of the snapshot's structure (every page read once)."""
    try:
        with closing(scratch_connection(snapshot)) as connection:
            problems = connection.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.DatabaseError as error:
        problems = [(str(error),)]
    if problems != [("ok",)]:
        found = "; ".join(str(row[0]) for row in problems)
        raise SnapshotRefusedError(f"The backup's database is damaged ({found}).")


def _complete(
    metadata: MetaData,
    live: Path,
    snapshot: Path,
    seal: KeyTransform,
    before: Callable[[Connection], Any],
    after: Callable[[Connection, dict[str, int]], Any],
) -> dict[str, int]:
    """In the snapshot: the machine's own rows from the live database, `before` on them
    (sessions end), keys sealed for this machine, `after` (the audit entry); committed
    only if every foreign key holds."""
    scratch = sqlite_engine(snapshot)
    try:
        with scratch.connect() as connection:
            # Outside any transaction: SQLite refuses ATTACH and this PRAGMA inside one.
            # Sessions point at the live accounts until `before` ends them.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.exec_driver_sql("ATTACH DATABASE ? AS live", (str(live),))
            try:
                _take_machine_rows(connection, metadata)
                before(connection)
                _transform_sealed(connection, metadata, seal)
                counts = _counts(connection, metadata)
                after(connection, counts)
                _check_foreign_keys(connection)
                connection.commit()
            finally:
                connection.rollback()
                connection.exec_driver_sql("DETACH DATABASE live")
    finally:
        scratch.dispose()
    return counts


def _take_machine_rows(connection: Connection, metadata: MetaData) -> None:
    """The live machine state replaces whatever the snapshot holds in those tables."""
    for table in machine_tables(metadata):
        columns = ", ".join(c.name for c in table.columns)
        connection.exec_driver_sql(f"DELETE FROM main.{table.name}")
        connection.exec_driver_sql(
            f"INSERT INTO main.{table.name} ({columns}) SELECT {columns} FROM live.{table.name}"
        )


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA main.foreign_key_check").fetchall()
    if broken:
        tables = ", ".join(sorted({str(row[0]) for row in broken}))
        raise SnapshotRefusedError(f"The backup's database has broken references ({tables}).")


PAGES_PER_STEP = 4096
CHECKPOINT_WAIT_MS = 1000


def _copy_over(snapshot: Path, live: Path, before_commit: Callable[[], Any]) -> None:
    """Copy the finished snapshot over the live file with SQLite's online backup, then
    fold the write-ahead log into the file so that no later request pays for it.

    The copy writes the live file in one transaction (as an install's rollback does),
    several times cheaper than deleting and inserting every row, with the same
    all-or-nothing outcome, readers served throughout and writers waiting. It goes in
    steps, holding the live write lock throughout, and waits for `before_commit` before
    the last one, which commits. The live machine rows were read just before: a change
    to them in that instant (a sign-in failure counted) is the one thing that can be lost."""
    with (
        closing(scratch_connection(snapshot)) as source,
        closing(sqlite3.connect(live, timeout=30)) as target,
    ):
        (pages,) = source.execute("PRAGMA page_count").fetchone()
        if pages <= PAGES_PER_STEP:
            before_commit()

        def progress(_status: int, remaining: int, _total: int) -> None:
            if 0 < remaining <= PAGES_PER_STEP:
                before_commit()

        source.backup(target, pages=PAGES_PER_STEP, progress=progress, sleep=0.05)
        # A reader still on the old snapshot holds the checkpoint back; it is not waited
        # for long (the next checkpoint finishes the job).
        target.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
        target.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _replace_rows(
    engine: Engine,
    metadata: MetaData,
    snapshot: Path,
    seal: KeyTransform,
    before: Callable[[Connection], Any],
    after: Callable[[Connection, dict[str, int]], Any],
    before_commit: Callable[[], Any],
) -> dict[str, int]:
    """Delete the live site rows and insert the snapshot's, in one transaction."""
    tables = site_tables(metadata)
    with engine.connect() as connection:
        attached = engine.dialect.name == "sqlite"
        if attached:  # outside any transaction: SQLite refuses ATTACH inside one
            connection.exec_driver_sql("ATTACH DATABASE ? AS snapshot", (str(snapshot),))
        try:
            before(connection)
            for table in reversed(tables):
                connection.execute(delete(table))
            _fill(connection, tables, snapshot, attached)
            _transform_sealed(connection, metadata, seal)
            counts = _counts(connection, metadata)
            after(connection, counts)
            before_commit()
            connection.commit()
        finally:
            connection.rollback()
            if attached:
                connection.exec_driver_sql("DETACH DATABASE snapshot")
    return counts


def _fill(connection: Connection, tables: list[Table], snapshot: Path, attached: bool) -> None:
    if attached:
        for table in tables:
            columns = ", ".join(c.name for c in table.columns)
            connection.exec_driver_sql(
                f"INSERT INTO main.{table.name} ({columns}) "
                f"SELECT {columns} FROM snapshot.{table.name}"
            )
        return
    source = sqlite_engine(snapshot)
    try:
        with source.connect() as reader:
            for table in tables:
                _copy_table(reader, connection, table)
        reset_sequences(connection, tables)
    finally:
        source.dispose()


def reset_sequences(connection: Connection, tables: list[Table]) -> None:
    """PostgreSQL keeps serial counters apart from the rows; move them past the restored ids
    (tables keyed by an integer id; a UUID key has no counter)."""
    for table in tables:
        if "id" in table.c and table.c.id.primary_key and isinstance(table.c.id.type, Integer):
            connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
            )


# -- compression of the snapshot inside a backup -----------------------------------


def compressed(snapshot: BinaryIO) -> BinaryIO:
    """The snapshot's bytes, zstd-compressed as they are read."""
    return zstandard.ZstdCompressor(level=3).stream_reader(snapshot)


WRITE_SIZE = 1024 * 1024


@contextmanager
def decompressing_into(path: Path) -> Iterator[BinaryIO]:
    """A new file at `path` that the compressed snapshot is written into, block by block."""
    with path.open("xb") as out:
        writer = zstandard.ZstdDecompressor().stream_writer(out, write_size=WRITE_SIZE)
        with writer:
            yield writer
