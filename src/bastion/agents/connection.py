"""The agent's end of one connection: open it over TLS, then read messages as awaitables.

`open_link` connects outbound to the site, verifies its certificate against the agent's
trust anchors only, and completes the WebSocket handshake; failures become a
`TrustError` (the certificate) or a `TransportError` (everything else), each with a
message an administrator can act on. `connect` does the same for any `ClientLink` on any
path (a session's own connection).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from bastion.agents.build_download import BuildDownload
from bastion.agents.errors import ProtocolError, TransportError, TrustError
from bastion.agents.protocol import BuildRefused, Codec, Message, ServerMessage
from bastion.agents.wire import Link, core_limit

PATH = "/agent/v1"
MAX_INBOX = 1000


@dataclass(frozen=True)
class Ended:
    reason: str


class ClientLink(Link):
    """The agent's end of a connection: it sends the upgrade request, and `ready` is
    resolved once the site accepted it (or failed with a `TransportError`)."""

    __slots__ = ("ready",)

    def __init__(self, core: ClientProtocol, codec: Codec) -> None:
        super().__init__(core, codec)
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(self.core, ClientProtocol)
        self.core.send_request(self.core.connect())
        self.flush()

    def handshake(self, event: object) -> None:
        if self.ready.done():
            return
        if self.core.handshake_exc is not None:
            error = TransportError(f"the site refused the WebSocket: {self.core.handshake_exc}")
            _fail(self.ready, error)
        else:
            self.ready.set_result(None)

    def ended(self, reason: str) -> None:
        if not self.ready.done():
            _fail(self.ready, TransportError(f"the connection closed: {reason}"))


class AgentLink(ClientLink):
    """A link to the gateway whose messages are read with `await receive()`; the bytes
    of a build asked for (and the site's refusal to send it) go to its `download`."""

    __slots__ = ("download", "inbox")
    binary = True

    def __init__(self, core: ClientProtocol, codec: Codec) -> None:
        super().__init__(core, codec)
        self.inbox: asyncio.Queue[ServerMessage | ProtocolError | Ended] = asyncio.Queue()
        self.download: BuildDownload | None = None

    def received(self, frame: bytes) -> None:
        try:
            message = self.codec.read_server(frame)
        except ProtocolError as error:
            self.inbox.put_nowait(error)
            self.refuse(error)
            return
        if isinstance(message, BuildRefused):  # late for a download given up: nothing to do
            if self.download is not None:
                self.download.refused(message)
            return
        if self.inbox.qsize() >= MAX_INBOX:
            self.drop("the site sent more than this client can read")
            return
        self.inbox.put_nowait(message)

    def received_binary(self, data: bytes) -> None:
        if self.download is None:
            error = ProtocolError("unexpected", "the site sent bytes no build was asked for")
            self.inbox.put_nowait(error)
            self.refuse(error)
            return
        self.download.received(data)

    def ended(self, reason: str) -> None:
        super().ended(reason)
        if self.download is not None:
            self.download.failed(f"the connection to the site ended: {reason}")
        self.inbox.put_nowait(Ended(reason))

    def send(self, message: Message) -> None:
        if not self.send_text(self.codec.write(message)):
            raise TransportError("the connection to the site is closing")

    async def receive(self, timeout: float | None) -> ServerMessage | None:
        """The next message, None after `timeout` seconds; raises if the connection ended."""
        try:
            async with asyncio.timeout(timeout):
                item = await self.inbox.get()
        except TimeoutError:
            return None
        if isinstance(item, ProtocolError):
            raise item
        if isinstance(item, Ended):
            self.inbox.put_nowait(item)  # every later read sees the end too
            raise TransportError(f"the site closed the connection: {item.reason}")
        return item


def _fail(future: asyncio.Future[None], error: Exception) -> None:
    """Fail `future` without a "never retrieved" warning if nobody awaits it any more."""
    future.set_exception(error)
    future.exception()


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the site."""

    site: str
    """The site hostname: the name checked against the certificate, and signed in hello."""
    port: int = 443
    address: str | None = None
    """Connect to this address instead of resolving `site` (the simulator, tests)."""
    source_address: str | None = None
    """Bind the connection to this local address (the simulator spreads over several)."""
    timeout: float = 15.0


L = TypeVar("L", bound=ClientLink)


async def open_link(endpoint: Endpoint, tls: ssl.SSLContext, codec: Codec) -> AgentLink:
    """A connected, handshaken link to the gateway, or a `TrustError` / `TransportError`."""
    return await connect(endpoint, tls, PATH, lambda core: AgentLink(core, codec), codec)


async def connect(
    endpoint: Endpoint,
    tls: ssl.SSLContext,
    path: str,
    make: Callable[[ClientProtocol], L],
    codec: Codec,
) -> L:
    """A link made by `make`, connected to `path` on the site and handshaken, or a
    `TrustError` / `TransportError`. The TLS server name and the Host header are always
    the site's name, whatever address is dialled."""
    loop = asyncio.get_running_loop()
    uri = parse_uri(f"wss://{endpoint.site}:{endpoint.port}{path}")
    made: list[L] = []

    def factory() -> L:
        made.append(make(ClientProtocol(uri, max_size=core_limit(codec))))
        return made[0]

    local = (endpoint.source_address, 0) if endpoint.source_address else None
    try:
        async with asyncio.timeout(endpoint.timeout):
            _, link = await loop.create_connection(
                factory,
                endpoint.address or endpoint.site,
                endpoint.port,
                ssl=tls,
                server_hostname=endpoint.site,
                local_addr=local,
                ssl_handshake_timeout=endpoint.timeout,
            )
            await link.ready
    except BaseException as error:
        for half_open in made:  # a connection that never became a link is not left open
            half_open.drop("the connection could not be completed")
        if isinstance(error, ssl.SSLCertVerificationError):
            raise _untrusted(endpoint, error) from None
        if isinstance(error, OSError | ssl.SSLError | TimeoutError):
            reason = error or "timed out"
            raise TransportError(f"cannot reach {_where(endpoint)}: {reason}") from None
        raise
    return link


def _where(endpoint: Endpoint) -> str:
    via = f" via {endpoint.address}" if endpoint.address else ""
    return f"the site {endpoint.site}:{endpoint.port}{via}"


def _untrusted(endpoint: Endpoint, error: ssl.SSLCertVerificationError) -> TrustError:
    return TrustError(
        f"TLS verification failed for {_where(endpoint)}: {error.verify_message}. The site's "
        "certificate is not signed by a trust anchor this Jump Client was installed with (or "
        "is for another name); reinstall the Jump Client from the site, or serve a "
        "certificate from an authority the clients trust."
    )
