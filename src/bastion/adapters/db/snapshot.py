"""Site data as a stream of JSON lines, and back: the database part of a backup.

A snapshot is taken in one read transaction (a consistent view on SQLite in WAL
mode and on PostgreSQL with REPEATABLE READ) while the appliance keeps serving.
It is written table by table, row by row, so memory does not grow with the
site. Loading replaces the site tables inside the caller's transaction, so a
restore is all-or-nothing.

Line format: ``{"table": NAME, "columns": [...]}`` starts a table; each
following line is one row as a JSON array in that column order.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy import Connection, Engine, LargeBinary, MetaData, Table, delete, insert, select
from sqlalchemy.types import DateTime, TypeDecorator

# Machine state and short-lived secrets stay with the machine; everything else is the site.
MACHINE_TABLES = frozenset(
    {"alembic_version", "web_sessions", "sign_in_failures", "api_tokens", "listen_addresses"}
)
BATCH = 1000

Row = dict[str, Any]
RowFilter = Callable[[str, Row], Row | None]
"""Applied to each row on the way out or in: return it (changed or not), or None to skip it."""


@dataclass
class SnapshotCounts:
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def site_tables(metadata: MetaData) -> list[Table]:
    """Tables in dependency order (parents first)."""
    return [t for t in metadata.sorted_tables if t.name not in MACHINE_TABLES]


def _is_datetime(table: Table, column: str) -> bool:
    kind = table.c[column].type
    impl = kind.impl if isinstance(kind, TypeDecorator) else kind
    return isinstance(impl, DateTime)


def _is_binary(table: Table, column: str) -> bool:
    return isinstance(table.c[column].type, LargeBinary)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def _decode(table: Table, column: str, value: Any) -> Any:
    if value is None:
        return None
    if _is_datetime(table, column):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if _is_binary(table, column):
        return base64.b64decode(value)
    return value


def dump(
    engine: Engine, metadata: MetaData, row_filter: RowFilter | None = None
) -> Iterator[bytes]:
    """Lines of every site table from one consistent snapshot, read as they are consumed."""
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name != "sqlite" else {}
    with engine.connect().execution_options(**options) as connection, connection.begin():
        for table in site_tables(metadata):
            yield from _dump_table(connection, table, row_filter)


def _dump_table(
    connection: Connection, table: Table, row_filter: RowFilter | None
) -> Iterator[bytes]:
    columns = [c.name for c in table.columns]
    yield json.dumps({"table": table.name, "columns": columns}).encode() + b"\n"
    order = list(table.primary_key.columns) or list(table.columns)[:1]
    result = connection.execution_options(yield_per=BATCH).execute(select(table).order_by(*order))
    for record in result.mappings():
        row = row_filter(table.name, dict(record)) if row_filter else dict(record)
        if row is not None:
            yield json.dumps([_encode(row[c]) for c in columns]).encode() + b"\n"


class LineStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte strings."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self._lines = lines
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = next(self._lines, None)
            if chunk is None:
                return 0
            self._buffer = chunk
        size = min(len(target), len(self._buffer))
        target[:size], self._buffer = self._buffer[:size], self._buffer[size:]
        return size


def read_lines(stream: IO[bytes]) -> Iterator[tuple[str, list[str], list[Any]]]:
    """(table, columns, values) for each row; a table with no rows yields nothing."""
    table, columns = "", []
    for line in stream:
        item = json.loads(line)
        if isinstance(item, dict):
            table, columns = item["table"], item["columns"]
        else:
            yield table, columns, item


def load(
    connection: Connection,
    metadata: MetaData,
    stream: IO[bytes],
    row_filter: RowFilter | None = None,
) -> SnapshotCounts:
    """Replace the site tables with the snapshot in `stream`, in the caller's transaction."""
    tables = {t.name: t for t in site_tables(metadata)}
    for table in reversed(list(tables.values())):
        connection.execute(delete(table))
    counts, batch, current = SnapshotCounts(), [], None
    for name, columns, values in read_lines(stream):
        table = tables.get(name)
        if table is None:
            continue  # a table this schema no longer has
        if current is not None and (table is not current or len(batch) >= BATCH):
            connection.execute(insert(current), batch)
            batch = []
        current = table
        row = {
            c: _decode(table, c, v) for c, v in zip(columns, values, strict=True) if c in table.c
        }
        kept = row_filter(name, row) if row_filter else row
        if kept is not None:
            batch.append(kept)
            counts.rows[name] = counts.rows.get(name, 0) + 1
    if current is not None and batch:
        connection.execute(insert(current), batch)
    _reset_sequences(connection, list(tables.values()))
    return counts


def _reset_sequences(connection: Connection, tables: list[Table]) -> None:
    """PostgreSQL keeps serial counters apart from the rows; move them past the restored ids."""
    if connection.dialect.name != "postgresql":
        return
    for table in tables:
        for column in table.primary_key.columns:
            if column.autoincrement is True or (
                column.autoincrement == "auto" and column.type.python_type is int
            ):
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                    f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"
                )
