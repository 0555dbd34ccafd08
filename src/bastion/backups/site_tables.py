"""Site data as a SQLite file, and back: the database part of a backup.

The snapshot is a SQLite database holding the site tables at the schema revision
they were taken at (its `alembic_version` travels with it), so an older snapshot
is brought forward by the same migrations as the appliance itself.

- From SQLite, the snapshot is SQLite's online backup of the live database (one
  consistent copy while the appliance keeps serving), with machine state removed.
- From PostgreSQL, the site tables are copied row by row in one REPEATABLE READ
  transaction into a new SQLite file migrated to the same revision.

Loading replaces the site tables of the live database in one transaction, so a
restore is all-or-nothing. Private keys travel unsealed inside the (encrypted)
backup and are sealed again with the receiving appliance's own key vault.

Which tables are machine state and which columns are sealed is declared where each
capability defines its tables (``info={"machine": True}`` on a table,
``info={"sealed_with": COLUMN}`` on a column), so this module names none of them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
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
    insert,
    inspect,
    select,
    update,
)

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
    return make_engine(f"sqlite:///{path}")


# -- taking a snapshot -----------------------------------------------------------


def take(engine: Engine, metadata: MetaData, target: Path, unseal: KeyTransform) -> dict[str, int]:
    """Write the site's snapshot to `target` (a new file); returns rows per table."""
    if engine.dialect.name == "sqlite":
        _copy_sqlite_file(engine, target)
        scratch = sqlite_engine(target)
        with scratch.begin() as connection:
            for table in machine_tables(metadata):
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
    """SQLite's online backup: one consistent copy, taken while others keep writing."""
    source = engine.url.database or ""
    with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(target)) as copy:
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


def load(
    engine: Engine,
    metadata: MetaData,
    snapshot: Path,
    seal: KeyTransform,
    before: Callable[[Connection], Any],
    after: Callable[[Connection, dict[str, int]], Any],
) -> dict[str, int]:
    """Replace the live site tables with the snapshot's (already at the live revision).

    In the same transaction, `before` runs on the live tables as they were, and `after`
    on the restored ones, with the rows per table."""
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
        _reset_sequences(connection, tables)
    finally:
        source.dispose()


def _reset_sequences(connection: Connection, tables: list[Table]) -> None:
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


def decompress(packed: BinaryIO, out: BinaryIO) -> None:
    zstandard.ZstdDecompressor().copy_stream(packed, out)
