"""The one message port between the site and the gateway processes holding clients.

A command for a Jump Client (wake, check in, upgrade, start a session) or an order to
disconnect one (revoked, replaced by a newer connection elsewhere) is published once;
the gateway process that holds the client's connection takes it. Every gateway process
subscribes; a process that does not hold the client ignores the message.

`InProcessMessagePort` connects gateways in one process (tests, one-process sites). The
same interface fits a broadcast between processes: a Unix socket to the supervisor, or
PostgreSQL LISTEN/NOTIFY when several appliances share a database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bastion.agents.protocol import Command, RetryReason


@dataclass(frozen=True)
class Deliver:
    """Send `command` to the client."""

    client_id: str
    command: Command


@dataclass(frozen=True)
class Disconnect:
    """Close the client's connection, telling it when to come back."""

    client_id: str
    reason: RetryReason
    retry_after: float
    detail: str = ""
    spare: tuple[str, int] | None = None
    """(gateway id, connection serial) of a connection to leave open: the newer one."""


GatewayMessage = Deliver | Disconnect
Handler = Callable[[GatewayMessage], bool]
"""Called with each published message; True if this process acted on it."""


class MessagePort(Protocol):
    def subscribe(self, gateway_id: str, handler: Handler) -> None: ...

    def unsubscribe(self, gateway_id: str) -> None: ...

    async def publish(self, message: GatewayMessage) -> bool:
        """Hand `message` to the gateway processes; True if one held the client."""
        ...


class InProcessMessagePort:
    """A `MessagePort` for gateways in this process."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def subscribe(self, gateway_id: str, handler: Handler) -> None:
        self._handlers[gateway_id] = handler

    def unsubscribe(self, gateway_id: str) -> None:
        self._handlers.pop(gateway_id, None)

    async def publish(self, message: GatewayMessage) -> bool:
        taken = [handler(message) for handler in list(self._handlers.values())]
        return any(taken)
