"""The two WebSocket ends of a session, on the site's web listener: the console's
terminal connection and the Jump Client's session connection.

Each end's first message names the session's single-use token; a wrong, replayed or
expired token, or an unknown session, is closed with 1008 and the reason, and nothing is
relayed. A first message that is not the expected one is closed with 1002.

A browser names the page that opened a WebSocket in its Origin header, and nothing stops
another site's page from opening one to the appliance: the console's terminal is refused
(1008) to a page of any origin but the site's own. The single-use token, handed out only
by a CSRF-protected form, already keeps such a page out; this makes it two locks. The
access console sends no Origin and is not concerned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from bastion.access_console import protocol as console
from bastion.agents.errors import ProtocolError
from bastion.agents.protocol import SESSION_PATH, Codec, SessionHello
from bastion.platform.runtime import Runtime
from bastion.platform.web.routing import Router
from bastion.sessions.kept import relay_kept_end, relay_kept_watch
from bastion.sessions.relay import Channel, JoinRefusedError, LiveSession, Rendezvous
from bastion.supervisor.client import SupervisorClient

router = Router()
HELLO_TIMEOUT = 10.0
"""How long an end has, once connected, to send its first message."""
REFUSED = 1008
MALFORMED = 1002
MAX_REASON = 120
"""A close reason is at most 123 bytes of UTF-8."""
Join = Callable[[Rendezvous], Awaitable[LiveSession]]


class WebSocketChannel:
    """A `Channel` over a Starlette WebSocket: a closed or broken connection reads as None
    and swallows writes."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive(self) -> bytes | str | None:
        try:
            message = await self.websocket.receive()
        except (RuntimeError, WebSocketDisconnect, OSError):
            return None
        if message["type"] != "websocket.receive":
            return None
        data = message.get("bytes")
        return data if data is not None else message.get("text")

    async def send(self, frame: bytes | str) -> None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            if isinstance(frame, bytes):
                await self.websocket.send_bytes(frame)
            else:
                await self.websocket.send_text(frame)

    async def close(self, code: int, reason: str) -> None:
        short = reason.encode()[:MAX_REASON].decode(errors="ignore")
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self.websocket.close(code, short)


def _rendezvous(websocket: WebSocket) -> Rendezvous | None:
    runtime: Runtime = websocket.app.state.runtime
    return runtime.maybe(Rendezvous)


async def _first(channel: Channel) -> bytes | str | None:
    try:
        return await asyncio.wait_for(channel.receive(), HELLO_TIMEOUT)
    except TimeoutError:
        return None


def foreign_origin(origin: str | None, scheme: str, host: str) -> bool:
    """Whether a page of `origin` is not the site reached as `host` over `scheme` (ws or
    wss). No Origin at all is a client that is not a browser."""
    if origin is None:
        return False
    try:
        return _origin(origin) != _origin(f"{'https' if scheme == 'wss' else 'http'}://{host}")
    except ValueError:  # a port that is not a number
        return True


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)


@router.websocket(console.CONSOLE_API + "/sessions/{session_id}/terminal")
async def console_terminal(websocket: WebSocket, session_id: str) -> None:
    await websocket.accept()
    channel = WebSocketChannel(websocket)
    said = await console_hello(websocket, channel)
    if said is None:
        return
    hello, first = said
    rendezvous = _rendezvous(websocket)
    if await _kept_elsewhere(websocket, rendezvous, session_id, first, channel):
        return
    live = await _join(
        channel, rendezvous, lambda r: r.join_console(session_id, hello.token, channel)
    )
    if live is not None and rendezvous is not None:
        await rendezvous.relay_console(live, channel)


@router.websocket(console.CONSOLE_API + "/live-sessions/{session_id}/watch")
async def watch_terminal(websocket: WebSocket, session_id: str) -> None:
    """An administrator's read-only view of a session in progress."""
    await websocket.accept()
    channel = WebSocketChannel(websocket)
    said = await console_hello(websocket, channel)
    if said is None:
        return
    hello, _first_frame = said
    rendezvous = _rendezvous(websocket)
    if rendezvous is None:
        await channel.close(REFUSED, "this appliance holds no sessions")
        return
    kept = rendezvous.kept_watches.take(session_id, hello.token)
    if kept is not None:
        await relay_kept_watch(kept, channel, REFUSED)
        return
    try:
        watcher = rendezvous.join_watcher(session_id, hello.token, channel)
    except JoinRefusedError as error:
        await channel.close(REFUSED, str(error))
        return
    await rendezvous.relay_watcher(session_id, watcher)


async def console_hello(
    websocket: WebSocket, channel: Channel
) -> tuple[console.ConsoleHello, bytes | str] | None:
    """The first message of a console (or a watcher), read and as it came, or None once
    the connection is refused and closed: a page of another origin, no hello in time,
    another message."""
    origin = websocket.headers.get("origin")
    if foreign_origin(origin, websocket.url.scheme, websocket.headers.get("host", "")):
        await channel.close(REFUSED, f"a page of {origin} may not open a terminal of this site")
        return None
    frame = await _first(channel)
    try:
        if frame is None:
            raise ProtocolError("malformed", "no console_hello came")
        hello = console.read_from_console(frame)
        if not isinstance(hello, console.ConsoleHello):
            raise ProtocolError("unexpected", "the first message must be console_hello")
    except ProtocolError as error:
        await channel.close(MALFORMED, str(error))
        return None
    return hello, frame


@router.websocket(SESSION_PATH + "{session_id}")
async def agent_session(websocket: WebSocket, session_id: str) -> None:
    await websocket.accept()
    channel = WebSocketChannel(websocket)
    rendezvous = _rendezvous(websocket)
    frame = await _first(channel)
    try:
        if frame is None:
            raise ProtocolError("malformed", "no session_hello came")
        hello = Codec().read_session_agent(frame)
        if not isinstance(hello, SessionHello) or hello.session_id != session_id:
            raise ProtocolError("unexpected", "the first message must be this session's hello")
    except ProtocolError as error:
        await channel.close(MALFORMED, str(error))
        return
    if await _kept_elsewhere(websocket, rendezvous, session_id, frame, channel):
        return
    live = await _join(
        channel,
        rendezvous,
        lambda r: r.join_agent(session_id, hello.client_id, hello.token, hello.v, channel),
    )
    if live is not None and rendezvous is not None:
        await rendezvous.relay_agent(live, channel)


async def _kept_elsewhere(
    websocket: WebSocket,
    rendezvous: Rendezvous | None,
    session_id: str,
    first: bytes | str,
    channel: Channel,
) -> bool:
    """A session that is not live here may be kept by the worker an install replaced (it
    was opened in the seconds before the switch): if so, join this end to it there
    (`kept.py`) and return True once it is over."""
    if rendezvous is None or session_id in rendezvous.live:
        return False
    runtime: Runtime = websocket.app.state.runtime
    supervisor = runtime.part(SupervisorClient)
    keeper = await asyncio.to_thread(supervisor.kept_session_socket, session_id)
    if keeper is None:
        return False
    await relay_kept_end(keeper, websocket.url.path, first, channel, REFUSED)
    return True


async def _join(channel: Channel, rendezvous: Rendezvous | None, join: Join) -> LiveSession | None:
    if rendezvous is None:
        await channel.close(REFUSED, "this appliance holds no sessions")
        return None
    try:
        return await join(rendezvous)
    except JoinRefusedError as error:
        await channel.close(REFUSED, str(error))
        return None
