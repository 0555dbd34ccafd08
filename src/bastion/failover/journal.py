"""The change journal: triggers on every site table write the table and primary key of
each inserted, updated or deleted row into `failover_journal`, in the same transaction
as the change, so a change and its journal entry commit or roll back together.

The triggers are made from the tables declared in the code (machine tables are left
out) and brought up to date at every start, after the migrations: a new site table is
journaled from the first start that knows it. SQLite gets three triggers a table;
PostgreSQL one a table, all calling one PL/pgSQL function given the key's columns.

On SQLite writers take turns, so entries commit in the order of their numbers. On
PostgreSQL a transaction may commit its entry after a later-numbered one did; a reader
that went past it would never send that change. So whoever reads a position to hand to
a backup (`settled_head`, a batch of changes) first takes the journal in SHARE mode:
that waits for every transaction that has written an entry to end, and holds new ones
back until the read's transaction ends (a batch read takes milliseconds).
"""

from __future__ import annotations

import uuid
from typing import cast

from sqlalchemy import Connection, Engine, MetaData, Table, delete, func, inspect, select, text

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
    journaled; returns how many were (re)created."""
    if engine.dialect.name == "postgresql":
        return _ensure_pg_triggers(engine, metadata)
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


PG_FUNCTION = "failover_journal_row"
PG_LOCK_KEY = int.from_bytes(b"bastjrnl", "big") & (2**63 - 1)
"""The advisory lock under which a process writes the journal's function and triggers."""
PG_FUNCTION_BODY = """
DECLARE
  old_key jsonb := '[]';
  new_key jsonb := '[]';
BEGIN
  FOR i IN 0 .. TG_NARGS - 1 LOOP
    IF TG_OP <> 'INSERT' THEN
      old_key := old_key || jsonb_build_array(to_jsonb(OLD) -> TG_ARGV[i]);
    END IF;
    IF TG_OP <> 'DELETE' THEN
      new_key := new_key || jsonb_build_array(to_jsonb(NEW) -> TG_ARGV[i]);
    END IF;
  END LOOP;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO failover_journal (table_name, row_key, operation)
      VALUES (TG_TABLE_NAME, new_key::text, 'I');
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO failover_journal (table_name, row_key, operation)
      VALUES (TG_TABLE_NAME, old_key::text, 'D');
  ELSE
    IF old_key IS DISTINCT FROM new_key THEN
      INSERT INTO failover_journal (table_name, row_key, operation)
        VALUES (TG_TABLE_NAME, old_key::text, 'U');
    END IF;
    INSERT INTO failover_journal (table_name, row_key, operation)
      VALUES (TG_TABLE_NAME, new_key::text, 'U');
  END IF;
  RETURN NULL;
END
"""
"""One function for every table: the key's column names are the trigger's arguments.
An update that changes the primary key records the old key too, as on SQLite."""


def _key_columns(table: Table) -> list[str]:
    return [c.name for c in table.primary_key.columns]


def pg_trigger_sql(table: Table) -> str:
    columns = ", ".join(f"'{name}'" for name in _key_columns(table))
    return (
        f"CREATE OR REPLACE TRIGGER {PREFIX}{table.name} AFTER INSERT OR UPDATE OR DELETE "
        f"ON {table.name} FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}({columns})"
    )


def _ensure_pg_triggers(engine: Engine, metadata: MetaData) -> int:
    """The function, then one trigger a site table present, each written only when it is
    missing or differs (so that the starts of a worker and a console at once do not
    rewrite them under each other); a trigger of ours on a table no longer journaled is
    dropped. Processes doing it at once take turns (a transaction-level advisory lock):
    two creating the missing function together would otherwise collide in the catalogue."""
    with engine.begin() as connection:
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%(key)s)", {"key": PG_LOCK_KEY})
        present = set(inspect(connection).get_table_names())
        wanted = {t.name: t for t in journaled_tables(metadata) if t.name in present}
        body = connection.exec_driver_sql(
            "SELECT prosrc FROM pg_proc WHERE proname = %(name)s "
            "AND pronamespace = current_schema()::regnamespace",
            {"name": PG_FUNCTION},
        ).scalar()
        if body != PG_FUNCTION_BODY:
            connection.exec_driver_sql(
                f"CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql "
                f"AS $${PG_FUNCTION_BODY}$$"
            )
        existing = connection.exec_driver_sql(
            "SELECT t.tgname, c.relname, t.tgargs FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal "
            "AND t.tgname LIKE %(prefix)s AND c.relnamespace = current_schema()::regnamespace",
            {"prefix": f"{PREFIX}%"},
        ).all()
        current: dict[str, list[str]] = {}
        for name, table_name, args in existing:
            if wanted.get(table_name) is None or name != f"{PREFIX}{table_name}":
                connection.exec_driver_sql(f'DROP TRIGGER "{name}" ON "{table_name}"')
            else:
                current[table_name] = bytes(args).decode().split("\0")[:-1]
        made = [t for t in wanted.values() if current.get(t.name) != _key_columns(t)]
        for table in made:
            connection.exec_driver_sql(pg_trigger_sql(table))
    return len(made)


# -- positions and marks ---------------------------------------------------------------


def head(connection: Connection) -> int:
    """The last journal sequence number ever given (kept even once pruned: by SQLite in
    `sqlite_sequence`, by PostgreSQL in the column's sequence)."""
    if connection.dialect.name == "postgresql":
        found = connection.execute(
            text(
                "SELECT last_value FROM pg_sequences WHERE schemaname || '.' || sequencename "
                "= pg_get_serial_sequence('failover_journal', 'seq')"
            )
        ).scalar()
    else:
        found = connection.execute(
            text("SELECT seq FROM sqlite_sequence WHERE name = 'failover_journal'")
        ).scalar()
    return int(found or 0)


def settle_writers(connection: Connection) -> None:
    """In a transaction that reads a position to hand to a backup: on PostgreSQL, wait
    for the transactions that wrote entries to end and hold new ones back until this
    one ends, so that no entry below the position read can still commit (the module's
    docstring). SQLite's writers already take turns."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("LOCK TABLE failover_journal IN SHARE MODE")


def settled_head(connection: Connection) -> int:
    """`head`, once no entry at or below it can still commit."""
    settle_writers(connection)
    return head(connection)


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
