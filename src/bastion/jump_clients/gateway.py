"""The gateway: holds Jump Client connections on a listening socket it is given.

One `Gateway` per process. The supervisor owns the listening socket and hands it over
(an inherited descriptor); several processes serve one site, each on the same shared
socket or on its own member of an SO_REUSEPORT group (see `sockets.py`), because one
process may hold only ~19,000 connections under the 20,000 open-file cap.

Per client: the TLS transport, the WebSocket framing state and a `GatewayLink`; no task
(one lives while a hello is checked, and one while a build is sent). Each process owns
one slice of everything shared: a share of the site's connection rate (`rate.py`), a
presence table flushed in batches (`presence.py`), a subscription to the message port
that routes commands to the process holding a client (`routing.py`), and the downloads
of the clients it holds, paced from the site's one bandwidth ledger (`builds.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from itertools import count
from typing import Any

from bastion.agents.errors import ProtocolError
from bastion.agents.protocol import (
    BuildRefused,
    BuildRequest,
    Codec,
    CommandResult,
    Hello,
    Upgrade,
    Welcome,
    encode_bytes,
)
from bastion.agents.wake import wake_key
from bastion.agents.wire import SLOW_READER
from bastion.jump_clients.acceptor import Acceptor
from bastion.jump_clients.builds import (
    Bandwidth,
    Build,
    Unsent,
    current_build,
    download_failed,
    send_over,
)
from bastion.jump_clients.config import GatewayConfig
from bastion.jump_clients.connection import GatewayLink, Phase
from bastion.jump_clients.directory import ClientDirectory, ClientRecord
from bastion.jump_clients.presence import Flusher, PresenceSink, PresenceTable
from bastion.jump_clients.rate import AdmissionGate, Gate
from bastion.jump_clients.routing import Deliver, Disconnect, GatewayMessage, MessagePort
from bastion.jump_clients.shared_rate import SharedAdmissionGate

log = logging.getLogger(__name__)
STOP_GRACE = 3.0
CAPACITY_RETRY = 10.0
"""A full process: another process (or this one, later) will have room."""
UNAVAILABLE_RETRY = 30.0
STANDBY_RETRY = 30.0
"""A client that reached a standing-by gateway: by then the site's name or address
should lead to the primary."""


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        tls: ssl.SSLContext,
        directory: ClientDirectory,
        sink: PresenceSink,
        port: MessagePort,
        codec: Codec | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self.tls, self.directory, self.port = config, tls, directory, port
        self.codec = codec or Codec()
        self.rng = rng or random.Random()
        self.clock = clock
        self.links: set[GatewayLink] = set()
        self.online: dict[str, GatewayLink] = {}
        self.presence = PresenceTable(config.gateway_id)
        self.flusher = Flusher(self.presence, sink, config.flush_interval)
        self.gate = _gate(config, clock())
        self.counters: Counter[str] = Counter()
        self._serials = count()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._acceptor: Acceptor | None = None
        self._accepting: asyncio.Task[None] | None = None
        self.standing_by = False
        self.stopping = False
        self.bandwidth = (
            Bandwidth(None, config.bandwidth_file)
            if config.bandwidth_file is not None
            else Bandwidth(config.upgrade_bandwidth_mib)
        )
        self._build: Build | None = None

    # -- running -------------------------------------------------------------------

    async def serve(self, sock: socket.socket) -> None:
        """Start accepting on the listening socket `sock` (it stays the caller's)."""
        config = self.config
        self._acceptor = Acceptor(
            sock.dup(),  # stopping closes this copy, not the caller's socket
            self.tls,
            self._new_link,
            config.max_pending,
            config.handshake_timeout,
            config.send_buffer,
            self.counters,
        )
        self._accepting = asyncio.create_task(self._acceptor.run())
        self.port.subscribe(self.config.gateway_id, self.handle)
        self._spawn(self.flusher.run())
        self._spawn(self._sweep())
        log.info("gateway %s serving", self.config.gateway_id)

    async def stop(self) -> None:
        """Stop accepting, send every client away at its reconnect offset, flush."""
        self.stopping = True
        if self._accepting is not None and self._acceptor is not None:
            self._accepting.cancel()
            await asyncio.gather(self._accepting, return_exceptions=True)
            self._acceptor.sock.close()
        self.port.unsubscribe(self.config.gateway_id)
        for link in list(self.online.values()):
            link.retry("shutting_down", self.reconnect_after(link), "the gateway is restarting")
        for link in list(self.links):
            if link.phase is not Phase.LEAVING:
                link.drop("the gateway stopped")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_GRACE):
                while self.links:
                    await asyncio.sleep(0.05)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.flusher.flush()
        if isinstance(self.gate, SharedAdmissionGate):
            self.gate.close()
        self.bandwidth.close()

    def reconfigure(self, connection_rate: float, statistics_interval: float) -> bool:
        """Apply the site's changed settings without a restart: the connection rate at once
        (the gate keeps its queue), the statistics interval for clients welcomed from now on
        (a held client learns it when it next connects). False if nothing changed."""
        config = self.config
        if (config.connection_rate, config.statistics_interval) == (
            connection_rate,
            statistics_interval,
        ):
            return False
        self.config = dataclasses.replace(
            config, connection_rate=connection_rate, statistics_interval=statistics_interval
        )
        if connection_rate != config.connection_rate:
            self.gate.set_rate(connection_rate, config.processes, config.burst, self.clock())
        log.info(
            "gateway %s admits %g clients/s and asks for statistics every %g s",
            config.gateway_id,
            connection_rate,
            statistics_interval,
        )
        return True

    def stand_by(self, standing_by: bool) -> bool:
        """While its appliance is a failover backup, the gateway holds no Jump Clients: on
        becoming one it sends every client away, each at its own reconnect offset (so
        that they reach the new primary at the site's connection rate, through the site
        name or address that now leads there), and tells each newcomer to try again
        later. False if nothing changed."""
        if standing_by == self.standing_by:
            return False
        self.standing_by = standing_by
        if standing_by:
            window = self.gate.reconnect_window(len(self.online))
            for link in list(self.online.values()):
                self.counters["sent_to_primary"] += 1
                link.retry("shutting_down", self._offset(link, window), STANDBY)
        log.info(
            "gateway %s %s",
            self.config.gateway_id,
            "stands by: this appliance is the failover backup"
            if standing_by
            else "serves Jump Clients again",
        )
        return True

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _new_link(self) -> GatewayLink:
        return GatewayLink(self, next(self._serials))

    async def _sweep(self) -> None:
        """Drop clients silent past the heartbeat timeout, and connections that never said hello."""
        while True:
            await asyncio.sleep(self.config.sweep_interval)
            now = self.clock()
            for link in list(self.links):
                if link.downloading:
                    continue  # busy receiving: a slow reader is cut off by the stall limit
                online = link.phase is Phase.ONLINE
                limit = self.config.heartbeat_timeout if online else self.config.hello_timeout
                if now - link.heard_at > limit:
                    self.counters["timed_out"] += 1
                    link.drop("no heartbeat in time" if online else "no hello in time")

    # -- what connections report ----------------------------------------------------

    def opened(self, link: GatewayLink) -> None:
        self.links.add(link)

    def settled(self, link: GatewayLink) -> None:
        """`link` is welcomed or gone: the acceptor may take another connection."""
        if not link.settled and self._acceptor is not None:
            link.settled = True
            self._acceptor.settle()

    def closed(self, link: GatewayLink, reason: str) -> None:
        self.settled(link)
        self.links.discard(link)
        if reason.startswith(SLOW_READER):
            self.counters["slow_readers"] += 1
        if link.client_id and self.online.get(link.client_id) is link:
            del self.online[link.client_id]
            self.presence.departed(link.client_id, reason)

    def full(self) -> bool:
        return len(self.links) > self.config.max_connections

    def capacity_retry(self) -> float:
        return self._jittered(CAPACITY_RETRY)

    def reconnect_after(self, link: GatewayLink) -> float:
        """When `link`'s client should return if the connection is lost: after the restart
        allowance, at its own place in the time this process needs to admit its clients."""
        return self._offset(link, self.gate.reconnect_window(len(self.online)))

    def _offset(self, link: GatewayLink, window: float) -> float:
        return round(self.config.restart_allowance + link.spread * window, 3)

    def authenticate(self, link: GatewayLink, hello: Hello) -> None:
        """Check `hello` (the directory may be slow: this runs as a short task)."""
        if self.standing_by:
            self.counters["standing_by"] += 1
            link.retry("unavailable", self._jittered(STANDBY_RETRY), STANDBY)
            return
        self._spawn(self._authenticate(link, hello))

    async def _authenticate(self, link: GatewayLink, hello: Hello) -> None:
        try:
            record = await self.directory.lookup(hello.client_id)
        except Exception:
            log.exception("the Jump Client directory failed; telling the client to return")
            link.retry("unavailable", self._jittered(UNAVAILABLE_RETRY), UNAVAILABLE)
            return
        if link.phase is not Phase.AUTHENTICATING:
            return  # the connection ended while the directory answered
        if record is None:
            self._refuse_unknown(link)
        elif record.revoked:
            self.counters["revoked"] += 1
            link.retry("revoked", self._jittered(self.config.revoked_retry), REVOKED)
        elif not link.verify(record.public_key, hello):
            link.refuse(ProtocolError("authentication_failed", BAD_SIGNATURE))
        else:
            self._admit(link, hello, record)

    def _admit(self, link: GatewayLink, hello: Hello, record: ClientRecord) -> None:
        """Welcome now, when its turn comes (held), or tell it when to come back.

        A client back on the build it was told to upgrade to skips the rate: the
        rollout's caps pace those returns, and holding them would hold the caps' places
        (after an install they would queue behind the whole fleet reconnecting)."""
        if record.upgrading_to and hello.agent_version == record.upgrading_to:
            self.counters["upgrade_returns"] += 1
            self._welcome(link, hello, record, paced=True)
            return
        now = self.clock()
        turn = self.gate.reserve(now)
        if turn is None:
            self.counters["rate_limited"] += 1
            wait = self.gate.retry_in(now, self.rng)
            link.retry("rate_limited", wait, f"the site admits {self.config.connection_rate:g}/s")
        elif turn <= 0.0:
            self._welcome(link, hello, record)
        else:
            self.counters["held"] += 1
            asyncio.get_running_loop().call_later(turn, self._welcome_held, link, hello, record)

    def _welcome_held(
        self, link: GatewayLink, hello: Hello, record: ClientRecord, paced: bool = False
    ) -> None:
        if link.phase is Phase.AUTHENTICATING and link.transport is not None:
            self._welcome(link, hello, record, paced)

    def _paced(self, link: GatewayLink, hello: Hello, record: ClientRecord) -> bool:
        """False, and the welcome moved to its own later slot, if it would overrun the rate."""
        delay = self.gate.pace(self.clock())
        if delay > 0.0:
            loop = asyncio.get_running_loop()
            loop.call_later(delay, self._welcome_held, link, hello, record, True)
            return False
        return True

    def _refuse_unknown(self, link: GatewayLink) -> None:
        self.counters["unknown"] += 1
        link.retry("unknown_client", self._jittered(self.config.unknown_retry), UNKNOWN)

    def _jittered(self, seconds: float) -> float:
        jitter = self.config.retry_jitter
        return seconds * self.rng.uniform(1.0 - jitter, 1.0 + jitter)

    def _welcome(
        self, link: GatewayLink, hello: Hello, record: ClientRecord, paced: bool = False
    ) -> None:
        if not paced and not self._paced(link, hello, record):
            return
        client_id = hello.client_id
        previous = self.online.get(client_id)
        if previous is not None:
            self.counters["replaced"] += 1
            previous.retry("replaced", self._jittered(self.config.replaced_retry), REPLACED)
        link.client_id, link.phase = client_id, Phase.ONLINE
        self.settled(link)
        self.online[client_id] = link
        self.counters["admitted"] += 1
        self.presence.arrived(hello, record.mode, link.address)
        link.send(self._welcome_message(link, record))
        spare = (self.config.gateway_id, link.serial)
        replaced = Disconnect(client_id, "replaced", self.config.replaced_retry, REPLACED, spare)
        self._spawn(self._publish(replaced))

    def _welcome_message(self, link: GatewayLink, record: ClientRecord) -> Welcome:
        config = self.config
        key = None
        if record.mode == "passive" and config.wake_secret:
            key = encode_bytes(wake_key(config.wake_secret, record.client_id))
        return Welcome(
            mode=record.mode,
            heartbeat_interval=config.heartbeat_interval,
            heartbeat_timeout=config.heartbeat_timeout,
            statistics_interval=config.statistics_interval,
            reconnect_after=self.reconnect_after(link),
            passive_linger=config.passive_linger,
            wake_key=key,
        )

    async def _publish(self, message: GatewayMessage) -> None:
        try:
            await self.port.publish(message)
        except Exception:
            log.exception("could not publish %s for %s", type(message).__name__, message.client_id)

    # -- the message port ----------------------------------------------------------

    def handle(self, message: GatewayMessage) -> bool:
        """Act on a published message if this process holds the client."""
        link = self.online.get(message.client_id)
        if link is None:
            return False
        if isinstance(message, Deliver):
            if isinstance(message.command.body, Upgrade):
                link.upgrade_order = (message.command.command_id, message.command.body.sha256)
            return link.send(message.command)
        if message.spare == (self.config.gateway_id, link.serial):
            return False
        link.retry(message.reason, message.retry_after, message.detail)
        return True

    # -- builds ----------------------------------------------------------------------

    def send_build(self, link: GatewayLink, request: BuildRequest) -> None:
        """Send the build the client was ordered to upgrade to over its connection."""
        if link.upgrade_order != (request.command_id, request.sha256):
            self._refuse_build(link, request, NOT_ORDERED)
        elif link.downloading:
            self._refuse_build(link, request, ALREADY_SENDING)
        else:
            link.downloading = True
            self._spawn(self._send_build(link, request))

    def _refuse_build(self, link: GatewayLink, request: BuildRequest, detail: str) -> None:
        self.counters["builds_refused"] += 1
        link.send(BuildRefused(command_id=request.command_id, detail=detail))

    async def _send_build(self, link: GatewayLink, request: BuildRequest) -> None:
        try:
            build = await self._current_build()
            if build is None or build.sha256 != request.sha256:
                self._refuse_build(link, request, NO_SUCH_BUILD)
                return
            why = await send_over(link, build, self.bandwidth, self.config.build_stall_seconds)
        except Exception:
            log.exception("could not send the build to Jump Client %s", link.client_id)
            self._refuse_build(link, request, BUILD_UNREADABLE)
            return
        finally:
            link.downloading = False
            link.heard_at = self.clock()  # busy with us until now: the heartbeats start over
        if why is None:
            self.counters["builds_sent"] += 1
            log.info("sent the build %s to Jump Client %s", request.sha256[:12], link.client_id)
            return
        self.counters["builds_failed"] += 1
        if why is Unsent.SHORT:  # the client is told, and reports its upgrade failed
            log.error("the Jump Client build on disk is shorter than when it was read")
            self._refuse_build(link, request, why.value)
            return
        detail = why.value.format(stall=self.config.build_stall_seconds)
        if why is Unsent.STALLED:
            log.warning("Jump Client %s: %s", link.client_id, detail)
            link.drop(detail)
        if not self.stopping:  # a gateway restarting sends its clients away on purpose
            failed = CommandResult(
                command_id=request.command_id, outcome="failed", detail=download_failed(detail)
            )
            self.presence.answered(link.client_id, failed)

    async def _current_build(self) -> Build | None:
        """The site's build (read once; a new site version comes with new processes)."""
        data_dir = self.config.data_dir
        if self._build is None and data_dir is not None:
            self._build = await asyncio.to_thread(current_build, data_dir)
        return self._build


def _gate(config: GatewayConfig, now: float) -> Gate:
    """The shared bucket if the supervisor made one, else this process's share of the rate."""
    rate, burst, hold = (
        config.connection_rate,
        config.connection_rate * config.burst,
        config.admission_hold,
    )
    jitter = config.retry_jitter
    if config.rate_file is not None:
        return SharedAdmissionGate(config.rate_file, rate, burst, jitter, hold, config.processes)
    return AdmissionGate.share(rate, config.processes, config.burst, jitter, hold, now)


REVOKED = "this Jump Client was removed from the site; uninstall it or reinstall from the site"
UNKNOWN = "the site does not know this Jump Client; reinstall it with an installer from the site"
UNAVAILABLE = "the site cannot check Jump Client identities right now; it will soon"
REPLACED = "a newer connection with this Jump Client's identity took over"
STANDBY = "this appliance is the failover backup; the site's primary serves Jump Clients"
NOT_ORDERED = (
    "no upgrade to this build was ordered on this connection; the site orders it again "
    "when this client's turn comes"
)
ALREADY_SENDING = "this build is already being sent over this connection"
NO_SUCH_BUILD = "the site serves no Jump Client build with this digest now"
BUILD_UNREADABLE = "the site cannot read its Jump Client build now; the site's log says why"
BAD_SIGNATURE = (
    "the hello is not signed with this Jump Client's key over this connection's challenge"
)
