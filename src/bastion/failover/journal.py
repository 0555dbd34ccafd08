"""The change journal: SQLite triggers on every site table write the table and primary
key of each inserted, updated or deleted row into `failover_journal`, in the same
transaction as the change, so a change and its journal entry commit or roll back
together.

The triggers are made from the tables declared in the code (machine tables are left
out) and brought up to date at every start, after the migrations: a new site table is
journaled from the first start that knows it. PostgreSQL gets no triggers (a failover
pair is SQLite-only for now).
"""

from __future__ import annotations

import uuid
from typing import cast

from sqlalchemy import Connection, Engine, MetaData, Table, delete, func, select, text

from bastion.failover.models import JournalEntry, JournalMark

PREFIX = "failover_journal_"
JOURNAL = cast(Table, JournalEntry.__table__)
MARKS = cast(Table, JournalMark.__table__)
TABLES_SQL = "SELECT name FROM sqlite_master WHERE type='table'"


def journaled_tables(metadata: MetaData) -> list[Table]:
    """Site tables, parents first: what a backup appliance receives."""
    return [t for t in metadata.sorted_tables if not t.info.get("machine")]


def _key(prefix: str, table: Table) -> str:
    columns = ", ".join(f"{prefix}.{c.name}" for c in table.primary_key.columns)
    return f"json_array({columns})"


def _changed_key(table: Table) -> str:
    return " OR ".join(f"OLD.{c.name} IS NOT NEW.{c.name}" for c in table.primary_key.columns)


def trigger_sql(table: Table) -> dict[str, str]:
    """The three triggers of one table, by name. An update that changes the primary key
    records the old key too (the backup then removes the row under it)."""
    name, insert = table.name, "INSERT INTO failover_journal (table_name, row_key, operation)"
    return {
        f"{PREFIX}{name}_i": f"CREATE TRIGGER {PREFIX}{name}_i AFTER INSERT ON {name} BEGIN "
        f"{insert} VALUES ('{name}', {_key('NEW', table)}, 'I'); END",
        f"{PREFIX}{name}_u": f"CREATE TRIGGER {PREFIX}{name}_u AFTER UPDATE ON {name} BEGIN "
        f"{insert} SELECT '{name}', {_key('OLD', table)}, 'U' WHERE {_changed_key(table)}; "
        f"{insert} VALUES ('{name}', {_key('NEW', table)}, 'U'); END",
        f"{PREFIX}{name}_d": f"CREATE TRIGGER {PREFIX}{name}_d AFTER DELETE ON {name} BEGIN "
        f"{insert} VALUES ('{name}', {_key('OLD', table)}, 'D'); END",
    }


def ensure_triggers(engine: Engine, metadata: MetaData) -> int:
    """Create, replace or drop triggers so that exactly the site tables present are
    journaled; returns how many were (re)created. Nothing to do on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return 0
    with engine.begin() as connection:
        present = {
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type='table'"
            )
        }
        wanted: dict[str, str] = {}
        for table in journaled_tables(metadata):
            if table.name in present:
                wanted.update(trigger_sql(table))
        existing: dict[str, str] = dict(
            connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type='trigger' AND name LIKE ?",
                (f"{PREFIX}%",),
            ).all()
        )
        for name, sql in existing.items():
            if wanted.get(name) != sql:
                connection.exec_driver_sql(f"DROP TRIGGER {name}")
        created = [sql for name, sql in wanted.items() if existing.get(name) != sql]
        for sql in created:
            connection.exec_driver_sql(sql)
    return len(created)


# -- positions and marks ---------------------------------------------------------------


def head(connection: Connection) -> int:
    """The last journal sequence number ever given (kept by SQLite even once pruned)."""
    found = connection.execute(
        text("SELECT seq FROM sqlite_sequence WHERE name = 'failover_journal'")
    ).scalar()
    return int(found or 0)


def mark(connection: Connection, name: str, default: str = "") -> str:
    found = connection.execute(select(MARKS.c.value).where(MARKS.c.name == name)).scalar()
    return default if found is None else str(found)


def set_mark(connection: Connection, name: str, value: str) -> None:
    connection.execute(delete(MARKS).where(MARKS.c.name == name))
    connection.execute(MARKS.insert().values(name=name, value=value))


def epoch(connection: Connection) -> str:
    """This journal's identity; a backup that holds another epoch starts from a snapshot."""
    found = mark(connection, "epoch")
    if not found:
        found = uuid.uuid4().hex
        set_mark(connection, "epoch", found)
    return found


def floor(connection: Connection) -> int:
    """Entries up to here were dropped before a backup read them."""
    return int(mark(connection, "floor", "0"))


# -- pruning -----------------------------------------------------------------------------


def prune_confirmed(connection: Connection, through: int) -> int:
    """Drop what the backup confirmed it holds."""
    return connection.execute(delete(JOURNAL).where(JOURNAL.c.seq <= through)).rowcount or 0


def bound(connection: Connection, keep: int) -> int:
    """Keep at most the newest `keep` entries; dropping unread ones raises the floor (a
    backup behind it starts again from a snapshot). `keep=0`: no backup reads this
    journal, drop it all."""
    last = head(connection)
    count = connection.execute(select(func.count()).select_from(JOURNAL)).scalar_one()
    if count <= keep:
        return 0
    cut = last - keep
    dropped = connection.execute(delete(JOURNAL).where(JOURNAL.c.seq <= cut)).rowcount or 0
    set_mark(connection, "floor", str(max(cut, floor(connection))))
    return dropped


KEEP_FOR_BACKUP = 1_000_000
"""Entries a primary keeps for a backup that has not confirmed them; beyond, the oldest
go and that backup starts again from a snapshot."""


def tend(engine: Engine, keeps_for_backup: bool) -> int:
    """Bound the journal: a primary keeps what its backup may still need, any other
    appliance nothing."""
    with engine.begin() as connection:
        return bound(connection, KEEP_FOR_BACKUP if keeps_for_backup else 0)


def restart(engine: Engine) -> None:
    """After the site was replaced underneath the journal (a restore): a new epoch, so that
    a backup starts again from a snapshot, and the old entries gone."""
    with engine.begin() as connection:
        connection.execute(delete(JOURNAL))
        set_mark(connection, "epoch", uuid.uuid4().hex)
