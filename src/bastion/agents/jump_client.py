"""The Jump Client's connection loop.

A Jump Client connects outbound only. Each attempt: open TLS to the site (trusting only
its installed anchors), answer the site's challenge with a signature, then

- **active** mode: hold the connection, send heartbeats and statistics at the intervals
  the site gave in `welcome`, carry out commands, until the connection ends;
- **passive** mode: report statistics, take any commands, say `bye`, and wait for the
  next check-in: a wake on the local wake port, or at the latest `check_in_every`
  seconds (a day) later.

A `start_session` command (when `sessions` is on) runs as a task of its own, on a
connection of its own (`bastion.agents.session`): its `command_result` goes out when that
connection is up, and neither the control connection nor its heartbeats ever wait for it.
Sessions outlive the control connection that started them.

Between attempts it waits as `BackoffPolicy` says: full-jitter exponential backoff
after failures, the site's `retry_after` when it gives one, and a spread over the
site's `reconnect_after` offset after a held connection is lost.

Nothing here is global: a simulator runs thousands of `JumpClient`s in one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

from bastion.agents.backoff import BackoffPolicy
from bastion.agents.build_download import BuildDownload
from bastion.agents.connection import AgentLink, Endpoint, open_link
from bastion.agents.errors import AgentError, ProtocolError, TransportError, UpgradeError
from bastion.agents.identity import EndpointIdentity
from bastion.agents.protocol import (
    AnySessionOrder,
    BuildRequest,
    Bye,
    Challenge,
    Codec,
    Command,
    CommandResult,
    Error,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Message,
    Mode,
    RetryAfter,
    ServerMessage,
    StartSession,
    StartSshSession,
    Statistics,
    Upgrade,
    Welcome,
    decode_bytes,
    encode_bytes,
)
from bastion.agents.protocol import Outcome as ResultOutcome
from bastion.agents.session import Opener, Session, Sessions, rendezvous_endpoint, shell_opener
from bastion.agents.shell import login_shell
from bastion.agents.ssh import ssh_opener
from bastion.agents.wake import WakeGuard, WakeListener
from bastion.platform.build import site_version

AGENT_VERSION = site_version()
"""This build of the Jump Client: the site version it came with."""
DAY = 86400.0

StatisticsSource = Callable[[], Awaitable[Statistics]]
CommandHandler = Callable[[Command], Awaitable[CommandResult]]
T = TypeVar("T")


@dataclass(frozen=True)
class JumpClientConfig:
    endpoint: Endpoint
    mode: Mode = "active"
    agent_version: str = AGENT_VERSION
    anchors: tuple[str, ...] = ()
    """Fingerprints of the trust anchors, reported in hello."""
    wake_address: tuple[str, int] | None = None
    """Passive mode: where to listen for wakes (port 0 picks one)."""
    check_in_every: float = DAY
    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    sessions: bool = False
    """Open remote sessions (a shell on a PTY) when the site asks. The installed service
    turns this on; a fleet simulator leaves it off and answers `unsupported`."""
    jumpoint: bool = False
    """A Jumpoint: its sessions are SSH connections to servers in its network
    (`start_ssh_session`), never a shell on its own machine."""


@dataclass(frozen=True)
class Lost:
    """A held connection ended; come back after `after` seconds (the site's offset)."""

    reason: str
    after: float


@dataclass(frozen=True)
class CheckedIn:
    """A passive check-in completed."""


Outcome = Lost | CheckedIn | RetryAfter


class Observer:
    """What a client reports as it runs (logging, tests, the simulator); all optional."""

    def welcomed(self, welcome: Welcome) -> None: ...

    def left(self) -> None:
        """A connection that was welcomed has ended (for any reason)."""

    def refused(self, answer: RetryAfter) -> None: ...

    def failed(self, error: AgentError) -> None: ...

    def heartbeat(self, round_trip: float) -> None: ...

    def checked_in(self) -> None: ...

    def lost(self, reason: str) -> None: ...

    def commanded(self, command: Command, result: CommandResult) -> None: ...

    def woken(self) -> None: ...

    def session_started(self, order: AnySessionOrder) -> None: ...

    def session_ended(self, session_id: str, how: str) -> None: ...


class JumpClient:
    """One endpoint's agent: its identity, its site, and the loop that keeps in touch."""

    def __init__(
        self,
        config: JumpClientConfig,
        identity: EndpointIdentity,
        tls: ssl.SSLContext,
        statistics: StatisticsSource,
        commands: CommandHandler | None = None,
        observer: Observer | None = None,
        rng: random.Random | None = None,
        codec: Codec | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.tls = tls
        self.statistics = statistics
        self.commands = commands or self.builtin_command
        self.observer = observer or Observer()
        self.rng = rng or random.Random()
        self.codec = codec or Codec()
        self.guard = WakeGuard(identity.client_id)
        self.wake_port: int | None = None
        self._woken = asyncio.Event()
        self._link: AgentLink | None = None
        self.sessions = Sessions()

    async def run(self) -> None:
        """Keep in touch with the site until cancelled; sessions end with it."""
        listener = await self._listen_for_wakes()
        failures = 0
        try:
            while True:
                delay, failures = await self._attempt(failures)
                await self._pause(delay)
        finally:
            if listener is not None:
                listener.close()
            await self.sessions.end_all()

    @property
    def sessions_in_progress(self) -> int:
        """Sessions opening or open now (an upgrade waits until there are none)."""
        return len(self.sessions)

    def send(self, message: Message) -> bool:
        """Send `message` on the connection held now; False when there is none."""
        if self._link is None:
            return False
        self._link.send(message)
        return True

    async def fetch_build(self, command_id: str, order: Upgrade, sink: BinaryIO) -> None:
        """Receive the build of upgrade order `command_id` over the connection held now,
        into `sink`, checked against the order's size and SHA-256; an `UpgradeError` says
        why it did not come whole."""
        link = self._link
        if link is None:
            raise UpgradeError("there is no connection to the site to fetch the build over")
        if link.download is not None:
            raise UpgradeError("a build is already being fetched over this connection")
        download = BuildDownload(command_id, order, sink)
        link.download = download
        try:
            link.send(BuildRequest(command_id=command_id, sha256=order.sha256))
            await download.finished()
        except TransportError as error:
            raise UpgradeError(f"the build could not be asked for: {error}") from None
        finally:
            link.download = None

    def wake(self) -> None:
        """Check in now (a verified wake, or a request from the endpoint's user)."""
        self._woken.set()
        self.observer.woken()

    async def _attempt(self, failures: int) -> tuple[float, int]:
        policy = self.config.policy
        try:
            outcome = await self.connect_once()
        except AgentError as error:
            self.observer.failed(error)
            return policy.after_failure(failures + 1, self.rng), failures + 1
        if isinstance(outcome, RetryAfter):
            self.observer.refused(outcome)
            return policy.after_retry_after(outcome.seconds), 0
        if isinstance(outcome, Lost):
            self.observer.lost(outcome.reason)
            return policy.after_lost(outcome.after), 0
        self.observer.checked_in()
        return self.config.check_in_every, 0

    async def _pause(self, delay: float) -> None:
        """Wait `delay` seconds; a wake ends the wait at once."""
        self._woken.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._woken.wait()

    async def connect_once(self) -> Outcome:
        """One connection: authenticate, then hold it (active) or check in (passive)."""
        link = await open_link(self.config.endpoint, self.tls, self.codec)
        self._link = link
        try:
            answer = await self._authenticate(link)
            if isinstance(answer, RetryAfter):
                return answer
            self._learn(answer)
            self.observer.welcomed(answer)
            try:
                if answer.mode == "passive":
                    return await self._check_in(link, answer)
                return await self._hold(link, answer)
            finally:
                self.observer.left()
        finally:
            self._link = None
            link.close(reason="done")

    async def _authenticate(self, link: AgentLink) -> Welcome | RetryAfter:
        challenge = await self._expect(link, Challenge)
        signature = self.identity.sign_hello(
            self.config.endpoint.site, decode_bytes(challenge.nonce)
        )
        link.send(self._hello(signature))
        return await self._expect(link, Welcome, RetryAfter)

    def _hello(self, signature: bytes) -> Hello:
        return Hello(
            client_id=self.identity.client_id,
            signature=encode_bytes(signature),
            agent_version=self.config.agent_version,
            mode=self.config.mode,
            anchors=self.config.anchors,
            wake_port=self.wake_port,
        )

    async def _expect(self, link: AgentLink, *kinds: type[T]) -> T:
        message = await link.receive(self.config.endpoint.timeout)
        if message is None:
            raise TransportError("the site did not answer in time")
        return self._require(message, kinds)

    def _require(self, message: ServerMessage, kinds: tuple[type[T], ...]) -> T:
        if isinstance(message, kinds):
            return message
        if isinstance(message, Error):
            raise ProtocolError(message.code, f"the site refused: {message.detail}")
        raise ProtocolError("unexpected", f"the site sent {message.type} out of turn")

    def _learn(self, welcome: Welcome) -> None:
        if welcome.wake_key is not None:
            self.guard.key = decode_bytes(welcome.wake_key)

    # -- active --------------------------------------------------------------------

    async def _hold(self, link: AgentLink, welcome: Welcome) -> Outcome:
        """Keep the connection until it ends; a break after the welcome is `Lost`, not a failure."""
        beat = _Beat(welcome)
        try:
            link.send(await self.statistics())
            while True:
                outcome = await self._step(link, beat)
                if outcome is not None:
                    return outcome
        except TransportError as error:
            return Lost(str(error), beat.after)

    async def _step(self, link: AgentLink, beat: _Beat) -> Outcome | None:
        message = await self._receive_until(link, beat)
        if isinstance(message, Lost):
            return message
        if message is not None:
            return await self._on_message(link, beat, message)
        if beat.silent_too_long():
            link.drop("no heartbeat answer")
            return Lost("the site stopped answering heartbeats", beat.after)
        await self._send_due(link, beat)
        return None

    async def _receive_until(self, link: AgentLink, beat: _Beat) -> ServerMessage | Lost | None:
        """The next message, None when something is due, or `Lost` if the connection broke."""
        try:
            message = await link.receive(max(0.0, beat.next_due() - time.monotonic()))
        except TransportError as error:
            return Lost(str(error), beat.after)
        if message is not None:
            beat.heard_at = time.monotonic()
        return message

    async def _send_due(self, link: AgentLink, beat: _Beat) -> None:
        now = time.monotonic()
        if now >= beat.heartbeat_at:
            link.send(Heartbeat(seq=beat.sent(now), sent_at=now))
        if now >= beat.statistics_at:
            beat.statistics_at = now + beat.welcome.statistics_interval
            link.send(await self.statistics())

    async def _on_message(
        self, link: AgentLink, beat: _Beat, message: ServerMessage
    ) -> Outcome | None:
        if isinstance(message, HeartbeatAck):
            beat.acked(message)
            self.observer.heartbeat(time.monotonic() - message.sent_at)
            return None
        if isinstance(message, Command):
            await self._carry_out(link, message)
            beat.heard_at = time.monotonic()  # a build may have come meanwhile, not in the inbox
            return None
        if isinstance(message, RetryAfter):
            return message
        if isinstance(message, Bye):
            return Lost(f"the site said goodbye: {message.reason}", beat.after)
        self._require(message, ())
        return None

    async def _carry_out(self, link: AgentLink, command: Command) -> None:
        if isinstance(command.body, StartSession | StartSshSession) and self.config.sessions:
            self._start_session(command, command.body)
            return
        result = await self.commands(command)
        link.send(result)
        self.observer.commanded(command, result)

    def _answer(self, command: Command, outcome: ResultOutcome, detail: str = "") -> None:
        """Answer `command` on the control connection held now, if there is one."""
        result = CommandResult(command_id=command.command_id, outcome=outcome, detail=detail[:500])
        with contextlib.suppress(TransportError):
            self.send(result)
        self.observer.commanded(command, result)

    # -- sessions ------------------------------------------------------------------

    def _start_session(self, command: Command, order: AnySessionOrder) -> None:
        refusal = self.sessions.refusal(order.session_id)
        start = self._opener(order)
        if start is None:
            refusal = (
                "a Jumpoint opens SSH sessions only, never a shell on its own machine"
                if self.config.jumpoint
                else "this Jump Client is no Jumpoint: it opens no SSH session"
            )
        if refusal or start is None:
            self._answer(command, "failed", refusal)
        else:
            self.sessions.start(order.session_id, self._session(command, order, start))

    def _opener(self, order: AnySessionOrder) -> Opener | None:
        """What the session relays: a shell for a Jump Client, SSH for a Jumpoint."""
        if isinstance(order, StartSshSession):
            return ssh_opener(order.target) if self.config.jumpoint else None
        return None if self.config.jumpoint else shell_opener(login_shell())

    async def _session(self, command: Command, order: AnySessionOrder, start: Opener) -> None:
        session = Session(order, self.identity.client_id, self.codec, start)
        try:
            await session.connect(rendezvous_endpoint(order, self.config.endpoint), self.tls)
        except AgentError as error:
            self._answer(command, "failed", f"the session could not be opened: {error}")
            return
        except BaseException:
            await session.close()
            raise
        self._answer(command, "done")
        self.observer.session_started(order)
        how = "ended: the Jump Client stopped"
        try:
            how = await session.run()
        finally:
            self.observer.session_ended(order.session_id, how)

    async def builtin_command(self, command: Command) -> CommandResult:
        """Check-ins and wakes are answered with fresh statistics; the rest are not
        carried out by this build, and it says so instead of pretending."""
        kind = command.body.kind
        if kind in ("check_in", "wake"):
            if self._link is not None:
                self._link.send(await self.statistics())
            return CommandResult(command_id=command.command_id, outcome="done")
        detail = f"this Jump Client ({self.config.agent_version}) does not carry out {kind}"
        if kind in ("start_session", "start_ssh_session"):
            detail = "sessions are turned off for this Jump Client"
        return CommandResult(command_id=command.command_id, outcome="unsupported", detail=detail)

    # -- passive -------------------------------------------------------------------

    async def _check_in(self, link: AgentLink, welcome: Welcome) -> Outcome:
        """Report, then take commands until the site has been quiet for its linger time."""
        link.send(await self.statistics())
        now = time.monotonic()
        link.send(Heartbeat(seq=0, sent_at=now))  # the ack marks the end of what was queued
        acked, quiet_until = False, now + self.config.endpoint.timeout
        while not acked or time.monotonic() < quiet_until:
            message = await link.receive(max(0.0, quiet_until - time.monotonic()))
            if message is None and not acked:
                raise TransportError("the site did not acknowledge the check-in")
            if isinstance(message, HeartbeatAck):
                acked, quiet_until = True, time.monotonic() + welcome.passive_linger
            elif isinstance(message, Command):
                await self._carry_out(link, message)
                quiet_until = max(quiet_until, time.monotonic() + welcome.passive_linger)
            elif isinstance(message, RetryAfter):
                return message
            elif message is not None:
                self._require(message, (Bye,))
                return CheckedIn()
        link.send(Bye(reason="checked in"))
        return CheckedIn()

    async def _listen_for_wakes(self) -> asyncio.Server | None:
        if self.config.mode != "passive" or self.config.wake_address is None:
            return None
        host, port = self.config.wake_address
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: WakeListener(self.guard, self.codec, self.wake), host, port
        )
        self.wake_port = server.sockets[0].getsockname()[1]
        return server


class _Beat:
    """When the next heartbeat and statistics are due, and whether the site still answers."""

    def __init__(self, welcome: Welcome) -> None:
        now = time.monotonic()
        self.welcome = welcome
        self.after = welcome.reconnect_after
        self.heartbeat_at = now + welcome.heartbeat_interval
        self.statistics_at = now + welcome.statistics_interval
        self.heard_at = now
        self.seq = 0

    def next_due(self) -> float:
        return min(
            self.heartbeat_at, self.statistics_at, self.heard_at + self.welcome.heartbeat_timeout
        )

    def sent(self, now: float) -> int:
        self.seq += 1
        self.heartbeat_at = now + self.welcome.heartbeat_interval
        return self.seq

    def acked(self, ack: HeartbeatAck) -> None:
        self.after = ack.reconnect_after

    def silent_too_long(self) -> bool:
        return time.monotonic() >= self.heard_at + self.welcome.heartbeat_timeout
