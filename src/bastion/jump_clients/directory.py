"""Who may connect: the gateway's port to the site's Jump Client records.

The gateway asks the directory for a client's public key, whether it was revoked, which
mode the site expects it in, and which version it was told to upgrade to. The site's
database implements `ClientDirectory` (`store.py`); `MemoryClientDirectory` serves tests
and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from bastion.agents.protocol import Mode


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    public_key: bytes
    """The raw Ed25519 public key made on the endpoint at install time."""
    mode: Mode = "active"
    """The mode the site expects; the client is told to follow it in `welcome`."""
    revoked: bool = False
    upgrading_to: str = ""
    """The version the site told this client to upgrade to, while that upgrade is under
    way: coming back on it, the client is admitted ahead of the connection rate (the
    upgrade caps pace those returns already)."""


class ClientDirectory(Protocol):
    async def lookup(self, client_id: str) -> ClientRecord | None:
        """The client's record, or None if the site has never known it."""
        ...


class MemoryClientDirectory:
    """A `ClientDirectory` held in a dict."""

    def __init__(self, records: list[ClientRecord] | None = None) -> None:
        self.records = {record.client_id: record for record in records or []}

    async def lookup(self, client_id: str) -> ClientRecord | None:
        return self.records.get(client_id)

    def add(self, record: ClientRecord) -> None:
        self.records[record.client_id] = record

    def revoke(self, client_id: str) -> None:
        self.records[client_id] = replace(self.records[client_id], revoked=True)
