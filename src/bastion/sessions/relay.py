"""The rendezvous: a session's two ends meet here, in the serving worker, and the bytes
between them pass through, recorded as they go.

Opening a session (in `console.py`) makes two single-use tokens, kept here only as
SHA-256 digests, and tells the Jump Client, through the gateway's message port, to
connect back to the site's web listener. The console's terminal connection and the
agent's session connection each present their token (`terminal.py`); once both are
here the console is told `started` and bytes flow both ways.

Buffering is bounded: each end's reader takes one frame, waits until the other end is
here, and hands the frame on before it reads the next, so an end that stops reading
stops the other end being read (the server reads no further frames from a connection
until the application has taken the last).

Administrators may watch a session live (read-only). A watcher never holds a session
back: it has a queue of its own (`WATCH_QUEUE` frames), first filled with the session's
most recent output so that its screen can be drawn, and a watcher whose queue is full
is dropped with the reason. Watching needs its own single-use token, given to
administrators only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

from bastion.access_console import protocol as console
from bastion.agents.errors import ProtocolError
from bastion.agents.protocol import (
    AnySessionOrder,
    Codec,
    Command,
    Resize,
    SessionEnd,
    SessionExit,
    StartSession,
    StartSshSession,
)
from bastion.agents.protocol import Error as AgentError
from bastion.platform.clock import utc_now
from bastion.platform.errors import ConflictError, NotFoundError, UnavailableError
from bastion.platform.unit_of_work import UnitOfWork
from bastion.sessions import rules, service
from bastion.sessions.recording import Recording, Stored
from bastion.sessions.service import Outcome, SessionPlan

log = logging.getLogger("bastion.sessions")
SEND_TIMEOUT = 5.0
"""How long ending a session waits to tell an end that does not read."""
WAKE_WAIT = 15.0
"""How long a woken passive client has to connect before the jump is refused."""
WATCH_QUEUE = 256
"""How many frames a watcher may be behind the session before it is dropped."""
WATCH_CHUNK = 16 * 1024
"""The recent output is sent to a new watcher in frames of this size."""
MAX_WATCHERS = 8
"""Watchers of one session at once."""
REFUSAL_CHECK = 0.5
"""How often a session waiting for its Jump Client looks whether the client refused it."""
Publish = Callable[[str, Command], Awaitable[bool]]
"""Send a command to the gateway process holding this client; True if one held it."""
Units = Callable[[], UnitOfWork]


class Channel(Protocol):
    """One end's connection: frames in, frames out."""

    async def receive(self) -> bytes | str | None:
        """The next frame; None once the connection is closed."""
        ...

    async def send(self, frame: bytes | str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class Waker(Protocol):
    async def wake(self, client_id: str, address: str, port: int) -> str: ...


class JoinRefusedError(Exception):
    """An end's token (or session) is not good: the message is the close reason."""


class Watcher:
    """An administrator watching a session: what it has not been sent yet, and the task
    that sends it (the session's own ends never wait for it)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[bytes | str | None] = asyncio.Queue(WATCH_QUEUE)
        self.sender: asyncio.Task[None] | None = None

    def offer(self, frame: bytes | str | None) -> bool:
        """Queue a frame (None: nothing follows); False if the watcher is too far behind."""
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    async def send_all(self) -> None:
        while (frame := await self.queue.get()) is not None:
            await self.channel.send(frame)


@dataclass
class LiveSession:
    plan: SessionPlan
    title: str
    console_token: str
    agent_token: str
    cols: int
    rows: int
    opened: float = field(default_factory=time.monotonic)
    console: Channel | None = None
    agent: Channel | None = None
    agent_version: int = 1
    console_used: bool = False
    agent_used: bool = False
    joined_at: datetime | None = None
    paired: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False
    reason: str = ""
    recording: Recording | None = None
    from_console: int = 0
    from_endpoint: int = 0
    watchdog: asyncio.Task[None] | None = None
    shown: bytearray = field(default_factory=bytearray)
    """The most recent output (at most `WATCH_TAIL_BYTES`), for a watcher's first screen."""
    watchers: list[Watcher] = field(default_factory=list)
    watch_tokens: dict[str, float] = field(default_factory=dict)
    """Digests of the watch tokens not used yet, with when each was given."""

    @property
    def session_id(self) -> str:
        return self.plan.session_id


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token_matches(token: str, digest: str) -> bool:
    return hmac.compare_digest(token_digest(token), digest)


@dataclass(frozen=True)
class Tickets:
    console_token: str


@dataclass(frozen=True)
class KeptWatch:
    """A watch of a session another worker of this appliance keeps (`kept.py`)."""

    session_id: str
    socket: str
    """That worker's private socket (an abstract Unix socket name)."""
    token: str
    """That worker's single-use watch ticket."""
    given: float


class KeptWatches:
    """The watch tickets this worker gave for sessions a retiring worker keeps."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._given: dict[str, KeptWatch] = {}

    def give(self, session_id: str, socket: str, token: str) -> str:
        """Our single-use ticket for the other worker's; it expires as a watch token does."""
        self._forget_expired()
        ours = secrets.token_urlsafe(32)
        self._given[token_digest(ours)] = KeptWatch(session_id, socket, token, time.monotonic())
        return ours

    def take(self, session_id: str, token: str) -> KeptWatch | None:
        """The kept watch this ticket was given for (once), or None."""
        self._forget_expired()
        digest = token_digest(token)
        kept = self._given.get(digest)
        if kept is None or kept.session_id != session_id:
            return None
        del self._given[digest]
        return kept

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for digest, kept in list(self._given.items()):
            if now - kept.given > self.lifetime:
                del self._given[digest]


class Rendezvous:
    """Every session live on this worker, in memory; one per serving worker."""

    def __init__(
        self,
        units: Units,
        data_dir: Path,
        rendezvous: str,
        join_timeout: float = rules.AGENT_JOIN_TIMEOUT.total_seconds(),
        token_lifetime: float = rules.TOKEN_LIFETIME.total_seconds(),
    ) -> None:
        self.units = units
        self.blobs_dir = data_dir / "blobs" / "sha256"
        self.work_dir = data_dir / "blobs" / "sessions"
        self.rendezvous = rendezvous
        """host:port of the site's web listener, as Jump Clients reach it."""
        self.join_timeout = join_timeout
        self.token_lifetime = token_lifetime
        self.publish: Publish | None = None
        """Set when the worker's gateways start; without it no session can open."""
        self.waker: Waker | None = None
        self.live: dict[str, LiveSession] = {}
        self.kept_watches = KeptWatches(token_lifetime)
        """Watches of sessions that the worker an install replaced keeps."""
        self.codec = Codec()

    # -- opening ---------------------------------------------------------------------------

    async def open(self, plan: SessionPlan, title: str, cols: int, rows: int) -> Tickets:
        """Hold the session and tell the Jump Client to connect; refused (and the record
        ended with the reason) beyond the licence's counts, or when no gateway holds the
        client."""
        console_token, agent_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        held = replace(plan, target=None)  # the credential goes in the order only, not kept
        digests = token_digest(console_token), token_digest(agent_token)
        live = LiveSession(held, title, *digests, cols, rows)
        refusal = self._hold(live)
        if refusal is not None:
            await self.end(live, refusal)
            raise ConflictError(refusal)
        shell = StartSession(
            session_id=plan.session_id,
            rendezvous=self.rendezvous,
            token=agent_token,
            cols=cols,
            rows=rows,
        )
        body: AnySessionOrder = shell
        if plan.target is not None:  # through a Jumpoint: the same order, to an SSH server
            body = StartSshSession(**shell.model_dump(exclude={"kind"}), target=plan.target)
        command = Command(command_id=rules.order_id(plan.session_id), body=body)
        refusal = await self._deliver(plan, command)
        if refusal is not None:
            await self.end(live, refusal)
            raise (UnavailableError if self.publish is None else ConflictError)(refusal)
        live.watchdog = asyncio.create_task(self._watch(live), name=f"session {plan.session_id}")
        return Tickets(console_token)

    def _hold(self, live: LiveSession) -> str | None:
        """Count the session against the licence and hold it, or say why the licence
        refuses it. Not a coroutine: the check and the holding happen with no other task
        running between them, so two opens racing for the last seat cannot both pass."""
        plan = live.plan
        refusal = rules.licence_refusal(plan.licensed, self.seats(), plan.seat)
        if refusal is None:
            self.live[plan.session_id] = live
        return refusal

    def seats(self) -> list[rules.Seat]:
        """The sessions in progress here, as the licence counts them: from opening until
        they end (a session whose ends never joined ends at its join deadline). Safe to
        call from a thread (a page): the table is copied in one step."""
        return [s.plan.seat for s in tuple(self.live.values()) if not s.ended]

    async def _deliver(self, plan: SessionPlan, command: Command) -> str | None:
        """Why the command could not reach the client, or None once a gateway took it."""
        if self.publish is None:
            return "this appliance runs no Jump Client gateway; sessions start through it"
        if plan.wake is None:
            if await self.publish(plan.client_id, command):
                return None
            return f"{plan.client_name} is not connected to the site; try again in a minute"
        answer = await self._wake(plan)
        deadline = time.monotonic() + WAKE_WAIT
        while time.monotonic() < deadline:
            if await self.publish(plan.client_id, command):
                return None
            await asyncio.sleep(0.25)
        return f"{plan.client_name} is passive and did not connect after a wake ({answer})"

    async def _wake(self, plan: SessionPlan) -> str:
        target = plan.wake
        if self.waker is None or target is None:
            return "no gateway to wake it"
        try:
            return await self.waker.wake(target.client_id, target.address, target.port)
        except (OSError, TimeoutError) as error:
            return f"the wake was not answered: {error}"

    async def _watch(self, live: LiveSession) -> None:
        deadline = live.opened + self.join_timeout
        while live.agent is None and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(REFUSAL_CHECK, left))
            refusal = await asyncio.to_thread(self._refusal, live.session_id)
            if refusal is not None and live.agent is None:
                await self.end(live, refusal)
                return
        if live.agent is None:
            await self.end(live, rules.DID_NOT_ANSWER)
            return
        await asyncio.sleep(max(0.0, self.token_lifetime - self.join_timeout))
        if live.console is None:
            await self.end(live, rules.CONSOLE_DID_NOT_CONNECT)

    def _refusal(self, session_id: str) -> str | None:
        """Why the Jump Client refused the session, once its answer (which reaches a
        gateway process, not this worker) has ended the session's record."""
        with self.units() as uow:
            return service.ended_early(uow, session_id)

    # -- joining ---------------------------------------------------------------------------

    def _claim(
        self, session_id: str, token: str, digest_of: Callable[[LiveSession], str]
    ) -> LiveSession:
        live = self.live.get(session_id)
        if live is None or live.ended:
            raise JoinRefusedError("there is no such session live on this appliance")
        if not _token_matches(token, digest_of(live)):
            raise JoinRefusedError("the token is not this session's")
        if time.monotonic() - live.opened > self.token_lifetime:
            raise JoinRefusedError("the session's token expired; open a new session")
        return live

    async def join_console(self, session_id: str, token: str, channel: Channel) -> LiveSession:
        live = self._claim(session_id, token, lambda s: s.console_token)
        if live.console_used:
            raise JoinRefusedError("the session's token was used already")
        live.console_used, live.console = True, channel
        await self._pair_if_ready(live)
        return live

    async def join_agent(
        self, session_id: str, client_id: str, token: str, version: int, channel: Channel
    ) -> LiveSession:
        live = self._claim(session_id, token, lambda s: s.agent_token)
        if client_id != live.plan.client_id:
            raise JoinRefusedError("this session is for another Jump Client")
        if live.agent_used:
            raise JoinRefusedError("the session's token was used already")
        live.agent_used, live.agent, live.agent_version = True, channel, version
        live.joined_at = utc_now()
        await self._pair_if_ready(live)
        return live

    async def _pair_if_ready(self, live: LiveSession) -> None:
        if live.console is None or live.agent is None or live.paired.is_set():
            return
        recording = await asyncio.to_thread(
            Recording, self.work_dir, live.cols, live.rows, live.title, live.plan.record_input
        )
        if live.ended:  # while the file was made
            await asyncio.to_thread(recording.discard)
            return
        live.recording = recording
        live.paired.set()
        await live.console.send(console.write(console.Started()))

    async def _until_paired(self, live: LiveSession) -> bool:
        """Wait for both ends; False if the session ended first."""
        if not live.paired.is_set():
            paired = asyncio.ensure_future(live.paired.wait())
            finished = asyncio.ensure_future(live.finished.wait())
            await asyncio.wait((paired, finished), return_when=asyncio.FIRST_COMPLETED)
            paired.cancel()
            finished.cancel()
        return live.paired.is_set() and not live.ended

    # -- relaying ----------------------------------------------------------------------------

    async def relay_console(self, live: LiveSession, channel: Channel) -> None:
        """Read the console until the session ends; then wait for the end to be written."""
        while not live.ended:
            frame = await channel.receive()
            if frame is None:
                await self.end(live, "the console disconnected")
            elif isinstance(frame, bytes):
                await self._keystrokes(live, frame)
            else:
                await self._console_message(live, frame)
        await live.finished.wait()

    async def _keystrokes(self, live: LiveSession, frame: bytes) -> None:
        if not await self._until_paired(live):
            return
        live.from_console += len(frame)
        assert live.recording is not None and live.agent is not None
        live.recording.input(frame)
        await live.agent.send(frame)

    async def _console_message(self, live: LiveSession, frame: str) -> None:
        try:
            message = console.read_from_console(frame)
        except ProtocolError as error:
            await self.end(live, f"the console sent {error}")
            return
        if isinstance(message, console.End):
            await self.end(live, "ended by the representative")
        elif isinstance(message, console.Resize):
            await self._resize(live, message.cols, message.rows)
        else:
            await self.end(live, "the console sent a second console_hello")

    async def _resize(self, live: LiveSession, cols: int, rows: int) -> None:
        live.cols, live.rows = cols, rows
        if not await self._until_paired(live):
            return
        assert live.recording is not None and live.agent is not None
        live.recording.resize(cols, rows)
        self._show(live, console.write(console.Resized(cols=cols, rows=rows)))
        resize = Resize(cols=cols, rows=rows)
        await live.agent.send(self.codec.write(resize, live.agent_version))

    async def relay_agent(self, live: LiveSession, channel: Channel) -> None:
        """Read the Jump Client until the session ends; then wait for the end to be written."""
        while not live.ended:
            frame = await channel.receive()
            if frame is None:
                await self.end(live, "the Jump Client disconnected")
            elif isinstance(frame, bytes):
                await self._output(live, frame)
            else:
                await self._agent_message(live, frame)
        await live.finished.wait()

    async def _output(self, live: LiveSession, frame: bytes) -> None:
        if not await self._until_paired(live):
            return
        live.from_endpoint += len(frame)
        assert live.recording is not None and live.console is not None
        live.recording.output(frame)
        self._show(live, frame)
        await live.console.send(frame)

    async def _agent_message(self, live: LiveSession, frame: str) -> None:
        try:
            message = self.codec.read_session_agent(frame)
        except ProtocolError as error:
            await self.end(live, f"the Jump Client sent {error}")
            return
        if isinstance(message, SessionExit):
            await self._until_paired(live)
            await self.end(live, rules.end_reason_for_exit(message.code), exit_code=message.code)
        elif isinstance(message, AgentError):
            await self.end(live, f"the Jump Client failed: {message.detail}")
        else:
            await self.end(live, "the Jump Client sent a second session_hello")

    # -- watching --------------------------------------------------------------------------

    def in_progress(self) -> list[LiveSession]:
        """The sessions live here, oldest first. Safe to call from a thread."""
        return sorted((s for s in tuple(self.live.values()) if not s.ended), key=lambda s: s.opened)

    async def until_idle(self, poll: float = 0.5) -> None:
        """Return once no session is live here (a retiring worker waits for this)."""
        while self.in_progress():
            await asyncio.sleep(poll)

    def watch_ticket(self, session_id: str) -> str:
        """A single-use token with which an administrator's console may watch the session."""
        live = self.live.get(session_id)
        if live is None or live.ended:
            raise NotFoundError(
                "No session with this id is in progress on this appliance; "
                "GET /api/v1/console/live-sessions lists those that are."
            )
        self._forget_expired_watch_tokens(live)
        if len(live.watchers) + len(live.watch_tokens) >= MAX_WATCHERS:
            raise ConflictError(
                f"This session has {MAX_WATCHERS} watchers (or tokens given for them) "
                "already; try again when one has left."
            )
        token = secrets.token_urlsafe(32)
        live.watch_tokens[token_digest(token)] = time.monotonic()
        return token

    def join_watcher(self, session_id: str, token: str, channel: Channel) -> Watcher:
        """A watcher of the session, its queue begun with what the session shows now. Not a
        coroutine: nothing the session relays can slip between that and its first frames."""
        live = self.live.get(session_id)
        if live is None or live.ended:
            raise JoinRefusedError("there is no such session live on this appliance")
        self._forget_expired_watch_tokens(live)
        if live.watch_tokens.pop(token_digest(token), None) is None:
            raise JoinRefusedError("the watch token is not this session's, or was used or expired")
        watcher = Watcher(channel)
        watcher.offer(
            console.write(console.Watching(title=live.title[:500], cols=live.cols, rows=live.rows))
        )
        shown = bytes(live.shown)
        for start in range(0, len(shown), WATCH_CHUNK):
            watcher.offer(shown[start : start + WATCH_CHUNK])
        live.watchers.append(watcher)
        watcher.sender = asyncio.create_task(
            self._send_to(live, watcher), name=f"watcher of {session_id}"
        )
        return watcher

    def _forget_expired_watch_tokens(self, live: LiveSession) -> None:
        now = time.monotonic()
        for digest, given in list(live.watch_tokens.items()):
            if now - given > self.token_lifetime:
                del live.watch_tokens[digest]

    async def relay_watcher(self, session_id: str, watcher: Watcher) -> None:
        """Read the watcher until it leaves or is closed; it may say nothing after its
        hello."""
        frame = await watcher.channel.receive()
        live = self.live.get(session_id)
        if live is not None and watcher in live.watchers:
            if frame is None:  # it left
                live.watchers.remove(watcher)
                if watcher.sender is not None:
                    watcher.sender.cancel()
            else:
                self._drop(live, watcher, f"watching is read-only; {frame_kind(frame)} was refused")
        if watcher.sender is not None:
            await asyncio.wait([watcher.sender])

    async def _send_to(self, live: LiveSession, watcher: Watcher) -> None:
        """Send the watcher its frames; at the session's end, close it with the reason (a
        watcher that is dropped or leaves is cancelled here and closed by `_drop`)."""
        await watcher.send_all()
        await _bounded(watcher.channel.close(1000, live.reason))

    def _show(self, live: LiveSession, frame: bytes | str) -> None:
        """Pass output (bytes) or a resize (text) to the watchers; keep the recent output."""
        if isinstance(frame, bytes):
            live.shown += frame
            del live.shown[: max(0, len(live.shown) - console.WATCH_TAIL_BYTES)]
        for watcher in list(live.watchers):
            if not watcher.offer(frame):
                self._drop(live, watcher, "the watcher fell behind the session")

    def _drop(self, live: LiveSession, watcher: Watcher, reason: str) -> None:
        live.watchers.remove(watcher)
        if watcher.sender is not None:
            watcher.sender.cancel()
        watcher.sender = asyncio.create_task(_closed(watcher.channel, reason))

    # -- ending --------------------------------------------------------------------------------

    async def end_session(self, session_id: str, reason: str) -> bool:
        """End a session live here; False if none is."""
        live = self.live.get(session_id)
        if live is None:
            return False
        await self.end(live, reason)
        return True

    async def end_all(self, reason: str) -> None:
        for live in list(self.live.values()):
            await self.end(live, reason)

    async def end(self, live: LiveSession, reason: str, exit_code: int | None = None) -> None:
        """Tell both ends, close them, store the recording and write the record. Once."""
        if live.ended:
            await live.finished.wait()
            return
        live.ended, live.reason = True, reason
        if live.watchdog is not None and live.watchdog is not asyncio.current_task():
            live.watchdog.cancel()
        try:
            self._tell_watchers(live, reason, exit_code)
            await self._tell_console(live, reason, exit_code)
            await self._tell_agent(live, reason, exit_code)
            stored = await self._store(live)
            await asyncio.to_thread(self._finish, live, stored)
        finally:
            self.live.pop(live.session_id, None)
            live.finished.set()

    def _tell_watchers(self, live: LiveSession, reason: str, exit_code: int | None) -> None:
        last = _last_word(reason, exit_code)
        for watcher in list(live.watchers):
            if watcher.offer(last) and watcher.offer(None):
                continue
            self._drop(live, watcher, "the watcher fell behind the session")

    async def _tell_console(self, live: LiveSession, reason: str, exit_code: int | None) -> None:
        if live.console is None:
            return
        await _bounded(live.console.send(_last_word(reason, exit_code)))
        await _bounded(live.console.close(1000, reason))

    async def _tell_agent(self, live: LiveSession, reason: str, exit_code: int | None) -> None:
        if live.agent is None:
            return
        if exit_code is None:
            end = SessionEnd(reason=reason[:200])
            await _bounded(live.agent.send(self.codec.write(end, live.agent_version)))
        await _bounded(live.agent.close(1000, reason))

    async def _store(self, live: LiveSession) -> Stored | None:
        if live.recording is None:
            return None
        try:
            return await asyncio.to_thread(live.recording.store, self.blobs_dir)
        except OSError:
            log.exception("the recording of session %s could not be stored", live.session_id)
            return None

    def _finish(self, live: LiveSession, stored: Stored | None) -> None:
        outcome = Outcome(
            reason=live.reason,
            joined_at=live.joined_at,
            bytes_from_console=live.from_console,
            bytes_from_endpoint=live.from_endpoint,
            recording_sha256=stored.sha256 if stored else None,
            recording_size=stored.size if stored else None,
        )
        with self.units() as uow:
            service.finish(uow, live.session_id, outcome)
            uow.commit()


def _last_word(reason: str, exit_code: int | None) -> str:
    """What the console (and each watcher) is told last."""
    if exit_code is not None:
        return console.write(console.Exited(code=exit_code))
    return console.write(console.Ended(reason=reason[:500]))


def frame_kind(frame: bytes | str) -> str:
    return "typing" if isinstance(frame, bytes) else "a message"


async def _closed(channel: Channel, reason: str) -> None:
    await _bounded(channel.close(1008, reason))


async def _bounded(step: Awaitable[None]) -> None:
    """An end that does not read is not waited for long; its connection goes anyway."""
    with contextlib.suppress(TimeoutError, OSError, RuntimeError):
        await asyncio.wait_for(step, SEND_TIMEOUT)
