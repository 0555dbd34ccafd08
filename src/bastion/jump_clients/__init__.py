"""The appliance's side of Jump Clients: the gateway that holds their connections."""

from __future__ import annotations

from bastion.jump_clients.config import GatewayConfig
from bastion.jump_clients.directory import ClientDirectory, ClientRecord, MemoryClientDirectory
from bastion.jump_clients.errors import GatewayError
from bastion.jump_clients.gateway import Gateway
from bastion.jump_clients.presence import MemoryPresenceSink, PresenceBatch, PresenceSink
from bastion.jump_clients.routing import Deliver, Disconnect, InProcessMessagePort, MessagePort

__all__ = [
    "ClientDirectory",
    "ClientRecord",
    "Deliver",
    "Disconnect",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "InProcessMessagePort",
    "MemoryClientDirectory",
    "MemoryPresenceSink",
    "MessagePort",
    "PresenceBatch",
    "PresenceSink",
]
