"""What the services need from the world, as protocols the adapters implement."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from bastion.domain.network import ListenAddress


def utc_now() -> datetime:
    return datetime.now(UTC)


class Hasher(Protocol):
    def hash(self, secret: str) -> str: ...

    def verify(self, hashed: str, secret: str) -> bool: ...


class Listeners(Protocol):
    """Opens and closes the sockets the appliance serves on, while it runs."""

    async def open(self, address: ListenAddress) -> None:
        """Start serving on `address`; raise `ListenError` if it cannot be bound."""

    async def close(self, address: ListenAddress) -> None: ...

    def active(self) -> list[ListenAddress]: ...


class ListenError(Exception):
    """An address could not be bound; the message says why in an administrator's words."""


class Supervisor(Protocol):
    """The base layer that runs the application and installs releases into slots."""

    def install(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def cancel(self) -> bool: ...

    def status(self) -> dict[str, Any]: ...
