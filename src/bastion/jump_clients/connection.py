"""The gateway's end of one Jump Client connection: a small state machine on callbacks.

    opened ──challenge──▶ awaiting hello ──hello──▶ authenticating ──▶ online ──▶ ended
                                                       │ unknown, revoked, over the rate:
                                                       └─▶ retry_after, close

Online, a client told to upgrade may ask for that build (`build_request`); the gateway
sends it over this connection (`Gateway.send_build`).

No task is kept per connection (one lives only while a hello is checked), so an idle
client costs the TLS transport, the framing state and this object.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from websockets.http11 import Request
from websockets.server import ServerProtocol

from bastion.agents.connection import PATH
from bastion.agents.errors import ProtocolError
from bastion.agents.identity import verify_hello
from bastion.agents.protocol import (
    BuildRequest,
    Bye,
    Challenge,
    ClientMessage,
    Codec,
    CommandResult,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Message,
    RetryAfter,
    RetryReason,
    Statistics,
    decode_bytes,
    encode_bytes,
)
from bastion.agents.wire import Link, core_limit
from bastion.jump_clients.config import GatewayConfig
from bastion.jump_clients.presence import PresenceTable
from bastion.jump_clients.rate import spread


class LinkOwner(Protocol):
    """What a link needs from the gateway that accepted it (implemented by `Gateway`)."""

    codec: Codec
    config: GatewayConfig
    clock: Callable[[], float]
    counters: Counter[str]
    presence: PresenceTable

    def opened(self, link: GatewayLink) -> None: ...

    def closed(self, link: GatewayLink, reason: str) -> None: ...

    def full(self) -> bool: ...

    def capacity_retry(self) -> float: ...

    def authenticate(self, link: GatewayLink, hello: Hello) -> None: ...

    def reconnect_after(self, link: GatewayLink) -> float: ...

    def send_build(self, link: GatewayLink, request: BuildRequest) -> None: ...


class Phase(Enum):
    HANDSHAKE = "handshake"
    AWAITING_HELLO = "awaiting hello"
    AUTHENTICATING = "authenticating"
    ONLINE = "online"
    LEAVING = "leaving"


class GatewayLink(Link):
    __slots__ = (
        "address",
        "client_id",
        "downloading",
        "gateway",
        "heard_at",
        "nonce",
        "peer_version",
        "phase",
        "serial",
        "settled",
        "spread",
        "upgrade_order",
    )

    def __init__(self, gateway: LinkOwner, serial: int) -> None:
        codec = gateway.codec
        core = ServerProtocol(max_size=core_limit(codec))
        super().__init__(core, codec, gateway.config.max_write_buffer)
        self.gateway = gateway
        self.serial = serial
        self.spread = spread(serial)
        self.settled = False
        self.phase = Phase.HANDSHAKE
        self.client_id = ""
        self.nonce = b""
        self.peer_version = codec.accepted.start
        """Until its hello says, the client may speak the oldest version read here: the
        challenge is written in that one, so that every client can read it."""
        self.heard_at = gateway.clock()
        self.address: str | None = None
        self.upgrade_order: tuple[str, str] | None = None
        """(command id, SHA-256) of the upgrade last ordered over this connection."""
        self.downloading = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else None
        self.gateway.opened(self)

    def ended(self, reason: str) -> None:
        self.phase = Phase.LEAVING
        self.gateway.closed(self, reason)

    def handshake(self, event: object) -> None:
        assert isinstance(self.core, ServerProtocol) and isinstance(event, Request)
        if event.path == PATH:
            response = self.core.accept(event)
        else:
            response = self.core.reject(404, f"Jump Clients connect to {PATH}\n")
        self.core.send_response(response)
        self.flush()
        if response.status_code == 101:
            self._challenge()
        else:
            self.close(reason="not a Jump Client request")

    def _challenge(self) -> None:
        if self.gateway.full():
            self.retry("capacity", self.gateway.capacity_retry(), "this gateway process is full")
            return
        self.nonce = secrets.token_bytes(32)
        self.phase = Phase.AWAITING_HELLO
        self.send(Challenge(nonce=encode_bytes(self.nonce)))

    def written(self, message: Message) -> str:
        return self.codec.write(message, self.peer_version)

    def send(self, message: Message) -> bool:
        return self.send_text(self.written(message))

    def refuse(self, error: ProtocolError) -> None:
        self.gateway.counters[f"refused_{error.code}"] += 1
        super().refuse(error)

    def retry(self, reason: RetryReason, seconds: float, detail: str) -> None:
        """Tell the client when to come back, and close."""
        self.send(RetryAfter(seconds=round(seconds, 3), reason=reason, detail=detail))
        self.phase = Phase.LEAVING
        self.close(reason=f"{reason}: {detail}")

    def received(self, frame: bytes) -> None:
        try:
            message = self.codec.read_client(frame)
        except ProtocolError as error:
            self.refuse(error)
            return
        self.heard_at = self.gateway.clock()
        if self.phase is Phase.ONLINE:
            self._online(message)
        elif self.phase is Phase.AWAITING_HELLO and isinstance(message, Hello):
            self.phase, self.peer_version = Phase.AUTHENTICATING, message.v
            self.gateway.authenticate(self, message)
        elif self.phase is not Phase.LEAVING:
            self.refuse(ProtocolError("unexpected", f"{message.type} was not expected now"))

    def _online(self, message: ClientMessage) -> None:
        presence = self.gateway.presence
        if isinstance(message, Heartbeat):
            presence.heard(self.client_id)
            after = self.gateway.reconnect_after(self)
            ack = HeartbeatAck(seq=message.seq, sent_at=message.sent_at, reconnect_after=after)
            self.send(ack)
        elif isinstance(message, Statistics):
            presence.reported(self.client_id, message)
        elif isinstance(message, CommandResult):
            presence.answered(self.client_id, message)
        elif isinstance(message, BuildRequest):
            self.gateway.send_build(self, message)
        elif isinstance(message, Bye):
            self.phase = Phase.LEAVING
            self.close(reason=message.reason or "the client said goodbye")
        else:
            self.refuse(ProtocolError("unexpected", f"{message.type} was not expected now"))

    def verify(self, public_key: bytes, hello: Hello) -> bool:
        """Is `hello` signed over this connection's challenge? The challenge is spent either way."""
        nonce, self.nonce = self.nonce, b""
        signature = decode_bytes(hello.signature)
        return bool(nonce) and verify_hello(
            public_key, self.gateway.config.site, hello.client_id, nonce, signature
        )
