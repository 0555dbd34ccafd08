"""The console's side of a session's terminal: a WebSocket over TLS to the site, relayed
to the local terminal.

After `console_hello` with the session's token, keystrokes go to the site as binary
frames and the remote terminal's output comes back as binary frames; text frames carry
`resize` (console to site, on SIGWINCH), `end` (console to site, on SIGTERM or SIGHUP)
and `started`, `exited`, `ended` (site to console).

On a terminal, stdin is put in raw mode (every key goes to the remote shell, Ctrl-C
included) and restored however the relay ends. Stdin may also be a pipe or a file (a
script, a test): then there is no raw mode and no resize, and the end of the input is
passed on as one Ctrl-D, so that `echo 'uname; exit' | bastion console jump web1` works.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import stat
import termios
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from bastion.access_console.errors import (
    ConsoleTransportError,
    ConsoleTrustError,
    MisunderstoodError,
    WatchRefusedError,
)
from bastion.access_console.protocol import (
    ConsoleHello,
    End,
    Ended,
    Exited,
    FromSite,
    Resize,
    Started,
    Watching,
    read_from_site,
    write,
)
from bastion.agents.errors import ProtocolError
from bastion.agents.protocol import MAX_FRAME_BYTES

CHUNK = 16 * 1024
END_OF_INPUT = b"\x04"
"""What the end of piped input becomes on the remote terminal: Ctrl-D."""
CONNECT_TIMEOUT = 15.0
LOST = 255
"""The exit status when the session ended without the remote shell's own (as ssh does)."""


@dataclass(frozen=True)
class Outcome:
    """How a session ended: the remote shell's exit code if it exited, and in words."""

    code: int | None
    reason: str

    @property
    def status(self) -> int:
        return LOST if self.code is None else self.code


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[bool]:
    """The terminal on `fd` in raw mode while the block runs, restored however it ends;
    whether it is a terminal (if not, nothing is changed)."""
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(fd: int) -> tuple[int, int] | None:
    """(cols, rows) of the terminal on `fd`, None if it is not one."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return (min(max(size.columns, 1), 1000), min(max(size.lines, 1), 1000))


async def open_terminal(url: str, tls: ssl.SSLContext, token: str) -> ClientConnection:
    """The terminal connection, hello said; a `ConsoleTrustError` / `ConsoleTransportError`."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            ws = await connect(url, ssl=tls, max_size=MAX_FRAME_BYTES, compression=None)
    except ssl.SSLCertVerificationError as error:
        raise ConsoleTrustError(
            f"The certificate of the site is not trusted ({error.verify_message}); "
            "give the CA that signed it with --ca-file."
        ) from None
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as error:
        raise ConsoleTransportError(f"Cannot open the terminal at {url}: {error}.") from None
    await ws.send(write(ConsoleHello(token=token)))
    return ws


async def relay(
    url: str, tls: ssl.SSLContext, token: str, stdin: int = 0, stdout: int = 1
) -> Outcome:
    """Connect the terminal at `url` and relay it to `stdin`/`stdout` until it ends."""
    ws = await open_terminal(url, tls, token)
    async with ws:
        with raw_mode(stdin) as raw:
            return await Relay(ws, stdin, stdout, raw).run()


class Relay:
    """One terminal connection relayed to local file descriptors."""

    def __init__(self, ws: ClientConnection, stdin: int, stdout: int, raw: bool) -> None:
        self.ws = ws
        self.stdin = stdin
        self.stdout = stdout
        self.raw = raw
        self.code: int | None = None
        self.reason = ""
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        signals = [signal.SIGTERM, signal.SIGHUP] + ([signal.SIGWINCH] if self.raw else [])
        for signum in signals:
            loop.add_signal_handler(signum, self._signalled, signum)
        typing = asyncio.create_task(self._input(), name="console input")
        try:
            if self.raw:
                self._resize()
            await self._output()
        finally:
            typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await typing
            for signum in signals:
                loop.remove_signal_handler(signum)
        return Outcome(self.code, self.reason or "the connection to the site closed")

    # -- site to console --------------------------------------------------------------

    async def _output(self) -> None:
        try:
            async for frame in self.ws:
                if isinstance(frame, bytes):
                    await _write_all(self.stdout, frame)
                else:
                    self._message(frame)
        except ConnectionClosed as closed:
            if self.code is None and not self.reason:
                self.reason = f"the connection to the site was lost ({closed})"

    def _message(self, frame: str) -> None:
        message = _understood(frame)
        if isinstance(message, Exited):
            self.code = message.code
            self.reason = f"the remote shell exited with {message.code}"
        elif isinstance(message, Ended):
            self.reason = message.reason
        elif isinstance(message, Started):
            pass  # the output that follows says so

    # -- console to site --------------------------------------------------------------

    async def _input(self) -> None:
        """Keystrokes (or piped input) to the site, no faster than it takes them."""
        with contextlib.suppress(ConnectionClosed, OSError):  # the end comes from output
            while data := await self._read():
                await self.ws.send(data)
            if not self.raw:
                await self.ws.send(END_OF_INPUT)

    async def _read(self) -> bytes:
        if not stat.S_ISREG(os.fstat(self.stdin).st_mode):  # a file is always readable
            await _readable(self.stdin)
        try:
            return os.read(self.stdin, CHUNK)
        except BlockingIOError:
            return await self._read()

    def _signalled(self, signum: int) -> None:
        if signum == signal.SIGWINCH:
            self._resize()
        else:
            self._send(write(End()))

    def _resize(self) -> None:
        size = terminal_size(self.stdin)
        if size is not None:
            self._send(write(Resize(cols=size[0], rows=size[1])))

    def _send(self, text: str) -> None:
        task = asyncio.create_task(self._send_quietly(text))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_quietly(self, text: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(text)


def _understood(frame: str) -> FromSite:
    try:
        return read_from_site(frame)
    except ProtocolError as error:
        raise MisunderstoodError(
            f"The site sent a message this console does not understand: {error.detail}"
        ) from None


async def watch(
    url: str, tls: ssl.SSLContext, token: str, stdout: int = 1, told: Callable[[str], None] = print
) -> Outcome:
    """Watch the session at `url`, read-only, writing what it shows to `stdout` until it
    ends (or the watcher is dropped); `told` hears what the site says about it."""
    ws = await open_terminal(url, tls, token)
    code, reason, watching = None, "", False
    async with ws:
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    await _write_all(stdout, frame)
                    continue
                message = _understood(frame)
                if isinstance(message, Watching):
                    watching = True
                    told(f"Watching {message.title} ({message.cols}x{message.rows}).")
                elif isinstance(message, Exited):
                    code, reason = message.code, f"the remote shell exited with {message.code}"
                elif isinstance(message, Ended):
                    reason = message.reason
        except ConnectionClosed as closed:
            said = closed.rcvd.reason if closed.rcvd is not None else ""
            if not watching:
                raise WatchRefusedError(f"The site refused the watch: {said or closed}") from None
            reason = reason or said or f"the connection to the site was lost ({closed})"
    return Outcome(code, reason or "the session ended")


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def mark() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, mark)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await asyncio.sleep(0.01)
