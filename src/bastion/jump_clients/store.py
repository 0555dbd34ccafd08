"""The gateway's ports, backed by the site's database: who may connect, and presence.

`DatabaseDirectory` answers the gateway's question about one client on each connection
(public key, revoked, expected mode, the upgrade under way). `DatabaseSink` writes a
presence batch in one transaction: one row per changed client, never one per heartbeat,
by one statement per set of changed columns. Both run the database work in a thread, so
the gateway's event loop never waits on it.

After a batch, clients that arrived while the site asks them to uninstall are told to,
through the message port of the gateway that holds them, and the clients' answers to
commands go to whoever the composition root named (`answered`: sessions' refusals end
their records, which the serving worker watches).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, Update, bindparam, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from bastion.agents.protocol import Command, CommandResult, Mode, Uninstall
from bastion.jump_clients.directory import ClientRecord
from bastion.jump_clients.models import JumpClientRow
from bastion.jump_clients.presence import PresenceBatch, PresenceUpdate
from bastion.jump_clients.routing import Deliver, MessagePort
from bastion.jump_clients.upgrades import UPGRADE

log = logging.getLogger(__name__)
WAKE_SECRET_KEY = "jump_clients.wake_secret"
UNINSTALL = "uninstall-"
"""How uninstall commands are named, so that their results can be told apart."""
Answered = Callable[[Sequence[tuple[str, CommandResult]]], None]
"""Takes (client id, result) of the commands answered in a batch; runs in a thread."""


class DatabaseDirectory:
    """Implements `ClientDirectory` on the `jump_clients` table."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    async def lookup(self, client_id: str) -> ClientRecord | None:
        return await asyncio.to_thread(self._lookup, client_id)

    def _lookup(self, client_id: str) -> ClientRecord | None:
        with self._factory() as session:
            row = session.execute(_LOOKUP, {"b_client_id": client_id}).first()
        if row is None:
            return None
        mode: Mode = "passive" if row.mode == "passive" else "active"
        upgrading_to = row.upgrade_version if row.upgrade_state == "upgrading" else ""
        revoked = row.revoked_at is not None
        return ClientRecord(row.client_id, row.public_key, mode, revoked, upgrading_to)


_TABLE = cast(Table, JumpClientRow.__table__)
_LOOKUP = select(
    _TABLE.c.client_id,
    _TABLE.c.public_key,
    _TABLE.c.mode,
    _TABLE.c.revoked_at,
    _TABLE.c.upgrade_state,
    _TABLE.c.upgrade_version,
).where(_TABLE.c.client_id == bindparam("b_client_id"))
"""The columns a connection needs, not the whole row (statistics and all): every
connection asks, 300 a second while a fleet comes back."""


class DatabaseSink:
    """Implements `PresenceSink` on the `jump_clients` table."""

    def __init__(
        self, engine: Engine, port: MessagePort | None = None, answered: Answered | None = None
    ) -> None:
        self._engine = engine
        self._port = port
        self._answered = answered

    async def write(self, batch: PresenceBatch) -> None:
        uninstalling = await asyncio.to_thread(self._write, batch)
        if self._answered is not None and batch.results:
            await asyncio.to_thread(self._pass_on, batch.results)
        if self._port is not None:
            for client_id in uninstalling:
                command = Command(command_id=UNINSTALL + secrets.token_hex(8), body=Uninstall())
                await self._port.publish(Deliver(client_id, command))

    def _write(self, batch: PresenceBatch) -> list[str]:
        """Store the batch; the clients that arrived and should uninstall themselves."""
        done = _uninstalled(batch)
        with self._engine.begin() as connection:
            for statement, rows in _grouped(batch.updates):
                connection.execute(statement, rows)
            if done:
                connection.execute(delete(JumpClientRow).where(JumpClientRow.client_id.in_(done)))
            _record_upgrades(connection, batch)
            arrived = [u.client_id for u in batch.updates if u.arrived_at is not None]
            if not arrived:
                return []
            query = select(JumpClientRow.client_id).where(
                JumpClientRow.client_id.in_(arrived),
                JumpClientRow.uninstall_requested_at.is_not(None),
            )
            return [row[0] for row in connection.execute(query) if row[0] not in done]

    def _pass_on(self, results: Sequence[tuple[str, CommandResult]]) -> None:
        """Hand the answers on; the batch is stored already, so a failure here is logged,
        not retried with the presence."""
        assert self._answered is not None
        try:
            self._answered(results)
        except Exception:
            log.exception("could not pass on the Jump Clients' answers to commands")


def _grouped(updates: Sequence[PresenceUpdate]) -> list[tuple[Update, list[dict[str, Any]]]]:
    """One UPDATE per set of changed columns, run for every client that changed just
    those (one executemany each): building a statement per client cost more than
    writing its row."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for change in updates:
        values = _values(change)
        row = {f"v_{name}": value for name, value in values.items()}
        row["b_client_id"] = change.client_id
        groups.setdefault(tuple(sorted(values)), []).append(row)
    return [
        (
            update(_TABLE)
            .where(_TABLE.c.client_id == bindparam("b_client_id"))
            .values({name: bindparam(f"v_{name}", type_=_TABLE.c[name].type) for name in names}),
            rows,
        )
        for names, rows in groups.items()
    ]


_UPGRADED = (
    update(_TABLE)
    .where(
        _TABLE.c.client_id == bindparam("b_client_id"),
        _TABLE.c.upgrade_state == "upgrading",
        _TABLE.c.upgrade_version == bindparam("b_version"),
    )
    .values(upgrade_state="done", upgrade_finished_at=bindparam("b_now"), upgrade_detail="")
)


def _record_upgrades(connection: Connection, batch: PresenceBatch) -> None:
    """A client upgrading that came back on its new version is done; one that says its
    upgrade failed (it reverted itself) has failed, with its reason."""
    now = datetime.now(UTC)
    returned = [
        {"b_client_id": change.client_id, "b_version": change.agent_version, "b_now": now}
        for change in batch.updates
        if change.arrived_at is not None and change.agent_version is not None
    ]
    if returned:
        connection.execute(_UPGRADED, returned)
    for client_id, result in batch.results:
        if result.command_id.startswith(UPGRADE) and result.outcome != "done":
            connection.execute(
                update(JumpClientRow)
                .where(JumpClientRow.client_id == client_id)
                .values(
                    upgrade_state="failed", upgrade_finished_at=now, upgrade_detail=result.detail
                )
            )


def _uninstalled(batch: PresenceBatch) -> list[str]:
    """Clients that carried out an uninstall: their records go."""
    return [
        c for c, r in batch.results if r.outcome == "done" and r.command_id.startswith(UNINSTALL)
    ]


def _time(unix: float | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


def _values(change: PresenceUpdate) -> dict[str, Any]:
    values: dict[str, Any] = {"online": change.online}
    seen = max(
        t
        for t in (change.arrived_at, change.departed_at, change.last_heartbeat, 0.0)
        if t is not None
    )
    if seen:
        values["last_seen_at"] = _time(seen)
    if change.arrived_at is not None:
        values["last_check_in_at"] = _time(change.arrived_at)
    if change.agent_version is not None:
        values["version"] = change.agent_version[:64]
    if change.anchors is not None:
        values["anchors"] = json.dumps(list(change.anchors))
    if change.address is not None:
        values["address"] = change.address[:64]
    if change.wake_port is not None:
        values["wake_port"] = change.wake_port
    if change.statistics is not None:
        values.update(_statistics(change))
    return values


def _statistics(change: PresenceUpdate) -> dict[str, Any]:
    stats = change.statistics
    assert stats is not None
    shown = stats.model_dump(exclude={"type", "v"}, mode="json")
    return {
        "statistics": json.dumps(shown),
        "hostname": stats.hostname[:255],
        "fqdn": stats.fqdn[:255],
        "os": stats.os[:255],
        "console_user": (stats.console_user or "")[:255],
    }


def wake_secret(factory: sessionmaker[Session]) -> bytes:
    """The site's wake secret, made on first use (it travels with backups)."""
    from bastion.platform.unit_of_work import UnitOfWork

    with UnitOfWork(factory) as uow:
        stored = uow.settings.get(WAKE_SECRET_KEY)
        if not stored:
            stored = secrets.token_hex(32)
            uow.settings.set(WAKE_SECRET_KEY, stored)
            uow.commit()
    return bytes.fromhex(str(stored))
