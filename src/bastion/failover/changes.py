"""Batches of changed rows: read on the primary from its journal, applied on the backup.

A batch names, per site table, the primary keys changed since the backup's position
and the rows under them as they are now (read in one transaction with the journal), so
a key without a row was deleted. The backup applies a batch in one transaction: the
rows under those keys removed, the rows sent inserted, its position moved, or nothing.
Sealed private keys travel opened (over the pair's TLS) and are sealed again by the
backup's own key vault, as a restore does.

On PostgreSQL, whose foreign keys cannot be turned off for a transaction (and whose
`ON DELETE CASCADE` would take a changed row's children with it), the backup removes
only the keys without a row, children first, and writes each row sent over the one
under its key (`INSERT … ON CONFLICT DO UPDATE`), parents first. A batch that still
breaks a constraint there (two rows that swapped a unique name) is not applied: the
backup starts again from a snapshot.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, delete, insert, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from bastion.backups.site_tables import reset_sequences
from bastion.failover import journal

BATCH_ENTRIES = 20_000
KEYS_PER_QUERY = 400

KeyTransform = Callable[[bytes, str], bytes]


class SnapshotNeededError(Exception):
    """The backup's position is not in the primary's journal (another epoch, or dropped),
    or a batch could not be applied as changes on the backup's PostgreSQL."""


@dataclass(frozen=True)
class Batch:
    through: int
    head: int
    tables: dict[str, dict[str, list[Any]]]
    """Per table: "keys" (each a list of primary key values) and "rows" (encoded)."""

    def as_json(self) -> dict[str, Any]:
        return {"through": self.through, "head": self.head, "tables": self.tables}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        return cls(int(data["through"]), int(data["head"]), dict(data["tables"]))

    @property
    def rows(self) -> int:
        return sum(len(t["rows"]) for t in self.tables.values())


def encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "b64" in value:
            return base64.b64decode(value["b64"])
        return datetime.fromisoformat(value["dt"])
    return value


def _sealed(table: Table) -> dict[str, str]:
    return {c.name: c.info["sealed_with"] for c in table.columns if "sealed_with" in c.info}


def _where_keys(table: Table, keys: list[list[Any]]) -> Any:
    columns = list(table.primary_key.columns)
    if len(columns) == 1:
        return columns[0].in_([k[0] for k in keys])
    return tuple_(*columns).in_([tuple(k) for k in keys])


def _chunks(keys: list[list[Any]]) -> Iterable[list[list[Any]]]:
    for start in range(0, len(keys), KEYS_PER_QUERY):
        yield keys[start : start + KEYS_PER_QUERY]


# -- on the primary ------------------------------------------------------------------------


def read(engine: Engine, metadata: MetaData, epoch: str, since: int, unseal: KeyTransform) -> Batch:
    """The changes after `since`, as the rows are now; all in one read transaction."""
    with engine.connect() as connection, connection.begin():
        journal.settle_writers(connection)
        if epoch != journal.epoch(connection) or since < journal.floor(connection):
            raise SnapshotNeededError
        head = journal.head(connection)
        entries = connection.execute(
            select(journal.JOURNAL.c.seq, journal.JOURNAL.c.table_name, journal.JOURNAL.c.row_key)
            .where(journal.JOURNAL.c.seq > since)
            .order_by(journal.JOURNAL.c.seq)
            .limit(BATCH_ENTRIES)
        ).all()
        through = entries[-1].seq if len(entries) == BATCH_ENTRIES else max(head, since)
        keys: dict[str, dict[str, list[Any]]] = defaultdict(dict)
        for entry in entries:
            keys[entry.table_name][entry.row_key] = json.loads(entry.row_key)
        tables = {
            name: _rows_of(connection, metadata.tables[name], list(found.values()), unseal)
            for name, found in keys.items()
            if name in metadata.tables
        }
    return Batch(through, head, tables)


def _rows_of(
    connection: Connection, table: Table, keys: list[list[Any]], unseal: KeyTransform
) -> dict[str, list[Any]]:
    sealed = _sealed(table)
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(keys):
        for row in connection.execute(select(table).where(_where_keys(table, chunk))).mappings():
            values = dict(row)
            for column, bound_to in sealed.items():
                if values[column] is not None:
                    values[column] = unseal(values[column], values[bound_to])
            rows.append({name: encode(value) for name, value in values.items()})
    return {"keys": keys, "rows": rows}


# -- on the backup ---------------------------------------------------------------------------


def apply(engine: Engine, metadata: MetaData, batch: Batch, epoch: str, seal: KeyTransform) -> None:
    """The batch and the new position in one transaction; foreign keys checked at the end
    (a row may arrive before the row it points at, within the batch)."""
    tables = [t for t in journal.journaled_tables(metadata) if t.name in batch.tables]
    if engine.dialect.name == "postgresql":
        _apply_writing_over(engine, tables, batch, epoch, seal)
        return
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # before the transaction
        try:
            for table in reversed(tables):
                for chunk in _chunks(batch.tables[table.name]["keys"]):
                    connection.execute(delete(table).where(_where_keys(table, chunk)))
            for table in tables:
                rows = [_decoded(table, row, seal) for row in batch.tables[table.name]["rows"]]
                if rows:
                    connection.execute(insert(table), rows)
            _check_references(connection)
            settle(connection, epoch, batch.through)
            connection.commit()
        finally:
            connection.rollback()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def _apply_writing_over(
    engine: Engine, tables: list[Table], batch: Batch, epoch: str, seal: KeyTransform
) -> None:
    """PostgreSQL's way (the module's docstring), in one transaction; the serial counters
    are moved past the ids written, for when this appliance becomes the primary."""
    try:
        with engine.begin() as connection:
            for table in reversed(tables):
                sent = batch.tables[table.name]
                kept = {_row_key(table, row) for row in sent["rows"]}
                gone = [key for key in sent["keys"] if tuple(key) not in kept]
                for chunk in _chunks(gone):
                    connection.execute(delete(table).where(_where_keys(table, chunk)))
            for table in tables:
                rows = [_decoded(table, r, seal) for r in batch.tables[table.name]["rows"]]
                if rows:
                    connection.execute(_write_over(table), rows)
            reset_sequences(connection, tables)
            settle(connection, epoch, batch.through)
    except IntegrityError as error:
        raise SnapshotNeededError(str(error.orig)) from None


def _row_key(table: Table, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(decode(row[c.name]) for c in table.primary_key.columns)


def _write_over(table: Table) -> Any:
    statement = pg_insert(table)
    keys = [c.name for c in table.primary_key.columns]
    others = {c.name: statement.excluded[c.name] for c in table.columns if not c.primary_key}
    if not others:
        return statement.on_conflict_do_nothing(index_elements=keys)
    return statement.on_conflict_do_update(index_elements=keys, set_=others)


def _decoded(table: Table, row: dict[str, Any], seal: KeyTransform) -> dict[str, Any]:
    values = {name: decode(value) for name, value in row.items() if name in table.c}
    for column, bound_to in _sealed(table).items():
        if values.get(column) is not None:
            values[column] = seal(values[column], values[bound_to])
    return values


def _check_references(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = ", ".join(sorted({str(row[0]) for row in broken}))
        raise ValueError(f"the primary's changes leave broken references in {tables}")


def settle(connection: Connection, epoch: str, position: int) -> None:
    """The backup holds the primary's data up to `position` of journal `epoch`; its own
    journal (its writes were the primary's changes) is of no use to anyone."""
    journal.set_mark(connection, "primary_epoch", epoch)
    journal.set_mark(connection, "position", str(position))
    connection.execute(delete(journal.JOURNAL))


def position(engine: Engine) -> tuple[str, int]:
    """The primary's epoch and the position this backup's data has reached."""
    with engine.connect() as connection:
        return journal.mark(connection, "primary_epoch"), int(
            journal.mark(connection, "position", "0")
        )
