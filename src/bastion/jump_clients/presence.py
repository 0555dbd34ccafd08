"""Who is online, held in memory and written out in batches.

Every heartbeat, statistics report, arrival and departure updates one record per client
in memory; every `flush_interval` the records changed since the last flush go to the
`PresenceSink` as one batch. 50,000 clients beating every 30 s are then about one write
of ~1,700 records a second, not 1,700 writes. A client that arrived and left within one
interval (a passive check-in) appears in the batch with both times.

A failed write keeps its records and merges them into the next batch: presence is late
then, never lost or reordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from bastion.agents.protocol import CommandResult, Hello, Mode, Statistics

log = logging.getLogger(__name__)
MAX_PENDING_RESULTS = 10_000


@dataclass(slots=True)
class PresenceUpdate:
    """What changed for one client since the last flush (wall-clock times)."""

    client_id: str
    gateway: str
    online: bool = True
    arrived_at: float | None = None
    departed_at: float | None = None
    departure: str = ""
    last_heartbeat: float | None = None
    statistics: Statistics | None = None
    agent_version: str | None = None
    mode: Mode | None = None
    anchors: tuple[str, ...] | None = None
    address: str | None = None
    wake_port: int | None = None
    check_ins: int = 0
    """Connections the client made during the window (arrived_at is the last one)."""


@dataclass(frozen=True)
class PresenceBatch:
    updates: tuple[PresenceUpdate, ...]
    results: tuple[tuple[str, CommandResult], ...] = ()
    """(client id, result) of commands the clients answered."""


class PresenceSink(Protocol):
    async def write(self, batch: PresenceBatch) -> None:
        """Store the batch (one transaction); raise if it could not be stored."""
        ...


class PresenceTable:
    """The records changed since the last flush, for one gateway process."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self._changes: dict[str, PresenceUpdate] = {}
        self._results: list[tuple[str, CommandResult]] = []

    def _entry(self, client_id: str) -> PresenceUpdate:
        entry = self._changes.get(client_id)
        if entry is None:
            entry = self._changes[client_id] = PresenceUpdate(client_id, self.gateway)
        return entry

    def arrived(self, hello: Hello, mode: Mode, address: str | None) -> None:
        entry = self._entry(hello.client_id)
        entry.online, entry.arrived_at = True, time.time()
        entry.check_ins += 1
        entry.agent_version, entry.mode, entry.anchors = hello.agent_version, mode, hello.anchors
        entry.address, entry.wake_port = address, hello.wake_port

    def heard(self, client_id: str) -> None:
        self._entry(client_id).last_heartbeat = time.time()

    def reported(self, client_id: str, statistics: Statistics) -> None:
        self._entry(client_id).statistics = statistics

    def departed(self, client_id: str, reason: str) -> None:
        entry = self._entry(client_id)
        entry.online, entry.departed_at, entry.departure = False, time.time(), reason

    def answered(self, client_id: str, result: CommandResult) -> None:
        if len(self._results) >= MAX_PENDING_RESULTS:
            log.warning("dropping a command result: the presence sink is not keeping up")
            return
        self._results.append((client_id, result))

    def take(self) -> PresenceBatch | None:
        """The changes since the last call, or None if there were none."""
        if not self._changes and not self._results:
            return None
        batch = PresenceBatch(tuple(self._changes.values()), tuple(self._results))
        self._changes, self._results = {}, []
        return batch

    def restore(self, batch: PresenceBatch) -> None:
        """Put back a batch that could not be written, under the changes made since."""
        for older in batch.updates:
            newer = self._changes.get(older.client_id)
            self._changes[older.client_id] = older if newer is None else _merge(older, newer)
        self._results[:0] = batch.results


def _merge(older: PresenceUpdate, newer: PresenceUpdate) -> PresenceUpdate:
    """`newer`, with what only `older` knew filled in."""
    for name in PresenceUpdate.__slots__:
        if getattr(newer, name) is None and getattr(older, name) is not None:
            setattr(newer, name, getattr(older, name))
    newer.check_ins += older.check_ins
    return newer


@dataclass
class Flusher:
    """Writes the table to the sink every `interval` seconds until stopped."""

    table: PresenceTable
    sink: PresenceSink
    interval: float
    written: int = field(default=0)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        batch = self.table.take()
        if batch is None:
            return
        try:
            await self.sink.write(batch)
        except Exception:
            log.exception("could not store Jump Client presence; retrying with the next batch")
            self.table.restore(batch)
            return
        self.written += len(batch.updates)


@dataclass
class ClientState:
    """The merged presence of one client, as a sink that keeps it would store it."""

    online: bool = False
    arrived_at: float | None = None
    departed_at: float | None = None
    departure: str = ""
    last_heartbeat: float | None = None
    statistics: Statistics | None = None
    agent_version: str | None = None
    mode: Mode | None = None
    address: str | None = None
    gateway: str = ""
    check_ins: int = 0


class MemoryPresenceSink:
    """A `PresenceSink` that keeps the merged state of every client (tests, benchmarks)."""

    def __init__(self) -> None:
        self.clients: dict[str, ClientState] = {}
        self.results: list[tuple[str, CommandResult]] = []
        self.batches = 0
        self.changed = asyncio.Event()

    async def write(self, batch: PresenceBatch) -> None:
        for update in batch.updates:
            self._apply(self.clients.setdefault(update.client_id, ClientState()), update)
        self.results.extend(batch.results)
        self.batches += 1
        self.changed.set()

    @staticmethod
    def _apply(state: ClientState, update: PresenceUpdate) -> None:
        state.online, state.gateway = update.online, update.gateway
        state.check_ins += update.check_ins
        if update.arrived_at is not None:
            state.arrived_at = update.arrived_at
        for name in (
            "departed_at",
            "last_heartbeat",
            "statistics",
            "agent_version",
            "mode",
            "address",
        ):
            value = getattr(update, name)
            if value is not None:
                setattr(state, name, value)
        if update.departure:
            state.departure = update.departure

    async def wait_for(self, condition: object, timeout: float = 10.0) -> None:
        """Wait until `condition()` is true after some batch (tests)."""
        assert callable(condition)
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self.changed.wait()
