"""What runs on endpoints (the Jump Client), and the protocol both ends speak."""

from __future__ import annotations

from bastion.agents.connection import Endpoint
from bastion.agents.errors import (
    AgentError,
    IdentityError,
    ProtocolError,
    TransportError,
    TrustError,
    WakeRefusedError,
)
from bastion.agents.identity import EndpointIdentity, load_or_create
from bastion.agents.jump_client import JumpClient, JumpClientConfig, Observer
from bastion.agents.protocol import PROTOCOL_VERSION, Codec

__all__ = [
    "PROTOCOL_VERSION",
    "AgentError",
    "Codec",
    "Endpoint",
    "EndpointIdentity",
    "IdentityError",
    "JumpClient",
    "JumpClientConfig",
    "Observer",
    "ProtocolError",
    "TransportError",
    "TrustError",
    "WakeRefusedError",
    "load_or_create",
]
