"""A remote session on the Jump Client's side: a login shell on a PTY, relayed over the
session's own connection to the site.

Told `start_session`, the client opens a fresh TLS connection to the rendezvous, verified
against its installed anchors only and named as its site (SNI and Host), upgrades it to a
WebSocket on `SESSION_PATH + session_id`, says `session_hello` with the single-use token,
then starts what the order asks for -- the user's login shell on a new PTY
(`bastion.agents.shell`) for a Jump Client, an SSH connection's PTY channel
(`bastion.agents.ssh`) for a Jumpoint -- and relays:

    binary frames            -> PTY input
    PTY output               -> binary frames of at most CHUNK bytes
    resize                   -> TIOCSWINSZ (the foreground job gets SIGWINCH)
    session_end, a lost or   -> SIGHUP to the shell's process group and the terminal's
    refused connection          foreground job, SIGKILL after HANG_UP_GRACE, then close
    the shell exits          -> the rest of its output, session_exit(code), close

Flow control both ways: the PTY is not read while the connection's write buffer is over
its high-water mark (`wire.Link` sets it), and the connection is not read while more
than MAX_PENDING_INPUT bytes wait for the shell to read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from websockets.client import ClientProtocol

from bastion.agents.connection import ClientLink, Endpoint, connect
from bastion.agents.errors import AgentError, ProtocolError
from bastion.agents.protocol import (
    SESSION_PATH,
    AnySessionOrder,
    Codec,
    Error,
    Resize,
    SessionEnd,
    SessionExit,
    SessionHello,
)
from bastion.agents.shell import Shell, Terminal
from bastion.agents.wire import CLOSE_GRACE

CHUNK = 16 * 1024
"""The most PTY output read at once, and so the largest binary frame sent."""
MAX_PENDING_INPUT = 64 * 1024
"""Input waiting for the shell beyond this pauses reading the connection."""


class Pty(Protocol):
    """What a session relays: a non-blocking descriptor for the terminal's bytes both ways
    (`master`), its exit status once it ends, and the terminal's controls."""

    master: int
    exited: asyncio.Future[int]

    def resize(self, cols: int, rows: int) -> None: ...

    async def hang_up(self) -> None: ...

    def close(self) -> None: ...


class CannotStartError(AgentError):
    """What the session was to relay could not start; the representative is told `str(self)`
    and the session exits with `code`."""

    def __init__(self, message: str, code: int = 127) -> None:
        super().__init__(message)
        self.code = code


Opener = Callable[[int, int], Awaitable[Pty]]
"""Starts what a session relays, on a terminal of (cols, rows)."""


def shell_opener(shell: Shell) -> Opener:
    """A Jump Client's sessions: `shell` on a new PTY."""

    async def start(cols: int, rows: int) -> Pty:
        try:
            return Terminal(shell, cols, rows)
        except OSError as error:
            raise CannotStartError(f"cannot start a shell: {error}") from None

    return start


def rendezvous_endpoint(order: AnySessionOrder, control: Endpoint) -> Endpoint:
    """Where to open the session's connection: the rendezvous host and port (443 if it
    names none), named as the site. A rendezvous naming the site itself is dialled where
    the control connection is (the address the client was installed with), since the
    site's name may not resolve there."""
    text = order.rendezvous
    if text.endswith("]") or ":" not in text:  # no port: HTTPS's own
        text += ":443"
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProtocolError("malformed", f"the rendezvous {order.rendezvous!r} is not host:port")
    address = control.address if host == control.site and control.address else host
    return Endpoint(control.site, int(port), address, control.source_address, control.timeout)


class SessionLink(ClientLink):
    """The session's connection: text messages and terminal bytes go to its `Session`."""

    __slots__ = ("session",)
    binary = True

    def __init__(self, core: ClientProtocol, codec: Codec, session: Session) -> None:
        super().__init__(core, codec)
        self.session = session

    def received(self, frame: bytes) -> None:
        try:
            message = self.codec.read_session_site(frame)
        except ProtocolError as error:
            self.refuse(error)
            self.session.finish(f"the site sent a bad message: {error.detail}")
            return
        if isinstance(message, Resize):
            self.session.resize(message.cols, message.rows)
        elif isinstance(message, SessionEnd):
            self.session.finish(f"ended by the site: {message.reason or 'no reason given'}")
        elif isinstance(message, Error):
            self.session.finish(f"the site refused the session: {message.detail}")

    def received_binary(self, data: bytes) -> None:
        self.session.input(data)

    def pause_writing(self) -> None:
        self.session.output_paused(True)

    def resume_writing(self) -> None:
        self.session.output_paused(False)

    def ended(self, reason: str) -> None:
        super().ended(reason)
        self.session.finish(f"the connection ended: {reason}")
        self.session.closed.set()


class Session:
    """One session, from its connection to the end of its shell."""

    def __init__(self, order: AnySessionOrder, client_id: str, codec: Codec, start: Opener) -> None:
        self.order = order
        self.client_id = client_id
        self.codec = codec
        self.start = start
        self.size = (order.cols, order.rows)
        self.link: SessionLink | None = None
        self.terminal: Pty | None = None
        self.pending = bytearray()
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        """Set (to why) when the site or the connection ends the session."""
        self.closed = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self._reading = False
        self._input_paused = False

    async def connect(self, endpoint: Endpoint, tls: ssl.SSLContext) -> None:
        """Open the session's connection and say hello; a `TrustError` or
        `TransportError` if it cannot be opened (then no shell is started)."""
        path = SESSION_PATH + self.order.session_id
        self.link = await connect(
            endpoint, tls, path, lambda core: SessionLink(core, self.codec, self), self.codec
        )
        hello = SessionHello(
            session_id=self.order.session_id, client_id=self.client_id, token=self.order.token
        )
        self.link.send_text(self.codec.write(hello))

    async def run(self) -> str:
        """Run the shell and relay until the session ends; how it ended, in words."""
        assert self.link is not None, "connect first"
        if self.ended.done():  # refused or lost before the shell started: none is started
            await self.close()
            return self.ended.result()
        try:
            self.terminal = await self._open()
        except CannotStartError as error:
            reason = self._cannot_start(error)
            await self.close()
            return reason
        if self.terminal is None:  # ended while it was opening
            await self.close()
            return self.ended.result()
        try:
            return await self._relay(self.terminal)
        finally:
            await self._release(self.terminal)

    async def _open(self) -> Pty | None:
        """Start what the session relays, unless the session ends first (None then)."""
        opening = asyncio.ensure_future(self.start(*self.size))
        await asyncio.wait((opening, self.ended), return_when=asyncio.FIRST_COMPLETED)
        if opening.done():
            terminal = opening.result()
            terminal.resize(*self.size)  # a resize may have come while it opened
            return terminal
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError, AgentError):
            await opening
        return None

    # -- events from the connection ---------------------------------------------------

    def input(self, data: bytes) -> None:
        self.pending += data
        self._write_input()

    def resize(self, cols: int, rows: int) -> None:
        self.size = (cols, rows)
        if self.terminal is not None:
            self.terminal.resize(cols, rows)

    def finish(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)

    def output_paused(self, paused: bool) -> None:
        if paused:
            self.writable.clear()
        else:
            self.writable.set()
        self._follow_output()

    # -- the relay --------------------------------------------------------------------

    async def _relay(self, terminal: Pty) -> str:
        self._reading = True
        self._follow_output()
        self._write_input()
        await asyncio.wait((terminal.exited, self.ended), return_when=asyncio.FIRST_COMPLETED)
        self._reading = False
        self._follow_output()
        if not terminal.exited.done():
            reason = self.ended.result()
            await terminal.hang_up()
            return reason
        code = terminal.exited.result()
        await self._drain(terminal)
        self._send_exit(code)
        return f"the shell exited with {code}"

    def _follow_output(self) -> None:
        """Read the PTY while relaying and the connection takes more; else do not."""
        terminal = self.terminal
        if terminal is None or terminal.master < 0:
            return
        loop = asyncio.get_running_loop()
        if self._reading and self.writable.is_set():
            loop.add_reader(terminal.master, self._output)
        else:
            loop.remove_reader(terminal.master)

    def _output(self) -> None:
        assert self.terminal is not None and self.link is not None
        try:
            data = os.read(self.terminal.master, CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: no process has the terminal open any more
            data = b""
        if not data:
            self._reading = False
            self._follow_output()
            return
        self.link.send_binary(data + self._more_output(CHUNK - len(data)))

    def _more_output(self, room: int) -> bytes:
        """What else the PTY holds right now, up to `room` bytes: a PTY read gives at most
        about 4 KiB, so a busy shell's output goes in fewer, fuller frames (each frame
        costs the site a relay step and a recording event). Never waits: a keystroke's
        echo goes out as soon as it is read."""
        assert self.terminal is not None
        parts: list[bytes] = []
        while room > 0:
            try:
                more = os.read(self.terminal.master, room)
            except OSError:  # nothing more now (EAGAIN), or the end (EIO, read again next)
                break
            if not more:
                break
            parts.append(more)
            room -= len(more)
        return b"".join(parts)

    async def _drain(self, terminal: Pty) -> None:
        """Send what the shell wrote before it exited (bounded: a job it left running
        may write for ever)."""
        assert self.link is not None
        for _ in range(64):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.writable.wait(), CLOSE_GRACE)
            try:
                data = os.read(terminal.master, CHUNK)
            except OSError:  # nothing waiting (EAGAIN), or no writer left (EIO)
                return
            if not data or not self.link.send_binary(data):
                return

    def _write_input(self) -> None:
        terminal, link = self.terminal, self.link
        if terminal is not None and self.pending:
            try:
                del self.pending[: os.write(terminal.master, self.pending)]
            except BlockingIOError:
                pass
            except OSError:  # the shell is gone; its end is on its way
                self.pending.clear()
        transport = link.transport if link is not None else None
        too_much = len(self.pending) > MAX_PENDING_INPUT
        if transport is not None and not transport.is_closing() and too_much != self._input_paused:
            self._input_paused = too_much
            if too_much:
                transport.pause_reading()
            else:
                transport.resume_reading()
        if terminal is not None:
            self._follow_input(terminal)

    def _follow_input(self, terminal: Pty) -> None:
        loop = asyncio.get_running_loop()
        if self.pending and not terminal.exited.done():
            loop.add_writer(terminal.master, self._write_input)
        else:
            loop.remove_writer(terminal.master)

    def _send_exit(self, code: int) -> None:
        assert self.link is not None
        self.link.send_text(self.codec.write(SessionExit(code=code)))
        self.link.close(reason="the shell exited")

    def _cannot_start(self, error: CannotStartError) -> str:
        assert self.link is not None
        self.link.send_binary(f"bastion: {error}\r\n".encode()[:CHUNK])
        self._send_exit(error.code)
        return f"it could not start: {error}"

    async def _release(self, terminal: Pty) -> None:
        """Hang up a shell still running (cancelled), free the PTY, close the connection
        and wait for it to be gone."""
        self._reading = False
        self.pending.clear()
        loop = asyncio.get_running_loop()
        loop.remove_reader(terminal.master)
        loop.remove_writer(terminal.master)
        try:
            await terminal.hang_up()
        finally:
            terminal.close()
            terminal.master = -1
            await self.close()

    async def close(self) -> None:
        """Close the connection (if open) and wait until it is gone."""
        if self.link is None:
            return
        self.link.close(reason="the session ended")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), CLOSE_GRACE + 1)


class Sessions:
    """A Jump Client's sessions in progress, one task each."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._none = asyncio.Event()
        self._none.set()
        self.refused = ""
        """Why new sessions are refused now ("" while they are not): set while an upgrade
        waits for the sessions in progress to end."""

    def __len__(self) -> int:
        return len(self._tasks)

    def refusal(self, session_id: str) -> str:
        """Why a session with this id cannot start now ("" if it can)."""
        if session_id in self._tasks:
            return f"session {session_id} is in progress already"
        return self.refused

    def start(self, session_id: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"session {session_id}")
        self._tasks[session_id] = task
        self._none.clear()
        task.add_done_callback(lambda _: self._done(session_id))

    async def ended(self) -> None:
        """Return once no session is in progress."""
        await self._none.wait()

    async def end_all(self) -> None:
        """End every session now: shells hung up, connections closed."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, session_id: str) -> None:
        self._tasks.pop(session_id, None)
        if not self._tasks:
            self._none.set()
