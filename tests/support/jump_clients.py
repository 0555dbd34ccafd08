"""A real gateway on a real TLS socket, and real Jump Clients, in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import uvloop

from bastion.agents.backoff import BackoffPolicy
from bastion.agents.connection import AgentLink, Endpoint, open_link
from bastion.agents.errors import AgentError
from bastion.agents.identity import EndpointIdentity, from_seed
from bastion.agents.jump_client import JumpClient, JumpClientConfig, Observer
from bastion.agents.protocol import (
    Codec,
    Command,
    CommandResult,
    Mode,
    RetryAfter,
    Statistics,
    Welcome,
)
from bastion.agents.statistics import collect
from bastion.agents.trust import anchor_fingerprints, anchors_context
from bastion.jump_clients.config import GatewayConfig
from bastion.jump_clients.directory import ClientRecord, MemoryClientDirectory
from bastion.jump_clients.gateway import Gateway
from bastion.jump_clients.presence import MemoryPresenceSink
from bastion.jump_clients.routing import InProcessMessagePort
from bastion.jump_clients.sockets import Sharing, listening_sockets
from bastion.supervisor.slots import CURRENT, MANIFEST
from tests.support.pki import TestCa

SITE = "bastion.test"
WAKE_SECRET = b"wake secret of the test site....."


@dataclass
class Pki:
    """A site certificate from one CA, and a second CA the site does not use."""

    directory: Path
    anchors: Path = field(init=False)
    foreign_anchors: Path = field(init=False)
    server: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        ca, foreign = TestCa(), TestCa("Some other CA")
        issued = ca.issue([SITE])
        self.anchors = self.directory / "anchors.pem"
        self.anchors.write_bytes(ca.pem())
        self.foreign_anchors = self.directory / "foreign.pem"
        self.foreign_anchors.write_bytes(foreign.pem())
        chain = self.directory / "server.pem"
        chain.write_bytes(issued.certificate_pem() + issued.key_pem())
        self.server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server.load_cert_chain(chain)


def run(coroutine: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    """Run a scenario on uvloop (what the gateway runs on), bounded in time."""

    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coroutine

    uvloop.run(bounded())


class Recorder(Observer):
    """Everything a client reported, with the monotonic time it happened."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, object]] = []
        self.changed = asyncio.Event()

    def _add(self, kind: str, detail: object) -> None:
        self.events.append((time.monotonic(), kind, detail))
        self.changed.set()

    def welcomed(self, welcome: Welcome) -> None:
        self._add("welcomed", welcome)

    def refused(self, answer: RetryAfter) -> None:
        self._add("refused", answer)

    def failed(self, error: AgentError) -> None:
        self._add("failed", error)

    def heartbeat(self, round_trip: float) -> None:
        self._add("heartbeat", round_trip)

    def checked_in(self) -> None:
        self._add("checked_in", None)

    def lost(self, reason: str) -> None:
        self._add("lost", reason)

    def commanded(self, command: Command, result: CommandResult) -> None:
        self._add("commanded", result)

    def of(self, kind: str) -> list[Any]:
        return [detail for _, k, detail in self.events if k == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            while len(self.of(kind)) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.of(kind)


async def real_statistics() -> Statistics:
    return await asyncio.to_thread(collect)


@dataclass
class Site:
    """A gateway serving `pki`'s certificate, with its directory, sink and message port."""

    pki: Pki
    config: GatewayConfig
    sharing: Sharing = "shared"
    processes: int = 1
    directory: MemoryClientDirectory = field(default_factory=MemoryClientDirectory)
    sink: MemoryPresenceSink = field(default_factory=MemoryPresenceSink)
    port: InProcessMessagePort = field(default_factory=InProcessMessagePort)
    gateways: list[Gateway] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    links: list[AgentLink] = field(default_factory=list)
    listen_port: int = 0

    @property
    def gateway(self) -> Gateway:
        return self.gateways[0]

    def enrol(self, seed: str, mode: Mode = "active", revoked: bool = False) -> EndpointIdentity:
        identity = from_seed(seed.encode())
        self.directory.add(ClientRecord(identity.client_id, identity.public_key, mode, revoked))
        return identity

    def endpoint(self, timeout: float = 5.0) -> Endpoint:
        return Endpoint(SITE, self.listen_port, "127.0.0.1", timeout=timeout)

    def client(
        self,
        identity: EndpointIdentity,
        recorder: Recorder,
        mode: Mode = "active",
        anchors: Path | None = None,
        statistics: Callable[[], Awaitable[Statistics]] = real_statistics,
        **options: Any,
    ) -> JumpClient:
        anchors = anchors or self.pki.anchors
        options.setdefault("policy", BackoffPolicy(base=0.2, cap=1.0))
        config = JumpClientConfig(
            self.endpoint(), mode=mode, anchors=anchor_fingerprints(anchors), **options
        )
        return JumpClient(config, identity, anchors_context(anchors), statistics, observer=recorder)

    async def connect(self) -> AgentLink:
        """A bare agent link (the test speaks the protocol itself); cut when the site stops."""
        link = await open_link(self.endpoint(), anchors_context(self.pki.anchors), Codec())
        self.links.append(link)
        return link

    def start(self, client: JumpClient) -> asyncio.Task[None]:
        task = asyncio.create_task(client.run())
        self.tasks.append(task)
        return task


@contextlib.asynccontextmanager
async def serving(pki: Pki, **settings: Any) -> AsyncIterator[Site]:
    """A site whose gateway processes (in this process) serve one loopback address."""
    processes = settings.pop("processes", 1)
    sharing = settings.pop("sharing", "shared")
    base = GatewayConfig(site=SITE, wake_secret=WAKE_SECRET, flush_interval=0.1)
    config = replace(base, processes=processes, **settings)
    site = Site(pki, config, sharing, processes)
    sockets = listening_sockets("127.0.0.1", 0, processes, sharing)
    site.listen_port = sockets[0].getsockname()[1]
    for index, sock in enumerate(sockets):
        gateway_config = replace(config, gateway_id=f"gateway-{index}")
        gateway = Gateway(gateway_config, pki.server, site.directory, site.sink, site.port)
        await gateway.serve(sock)
        site.gateways.append(gateway)
    try:
        yield site
    finally:
        for task in site.tasks:
            task.cancel()
        await asyncio.gather(*site.tasks, return_exceptions=True)
        for link in site.links:
            link.drop("the test ended")
        for gateway in site.gateways:
            await gateway.stop()
        for sock in set(sockets):
            sock.close()


def site_release(data_dir: Path, version: str, build: bytes) -> None:
    """Make `data_dir` that of a site running release `version`, whose Jump Client build
    is `build` (its slot and its wheel where an install leaves them): what a gateway
    given this `data_dir` sends clients told to upgrade."""
    releases = data_dir / "releases"
    slot = releases / f"site-{version}-test"
    slot.mkdir(parents=True)
    manifest = {"factory": False, "package": str(slot / "package.tar"), "version": version}
    (slot / MANIFEST).write_text(json.dumps(manifest))
    (releases / CURRENT).symlink_to(slot.name)
    wheel = data_dir / "blobs" / "jump-clients" / f"bastion-{version}.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(build)
