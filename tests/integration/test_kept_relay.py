"""The live worker's relay to the worker an install replaced (`sessions/kept.py`), over
real uvicorn servers on abstract Unix sockets, as the two workers serve their private
sockets: a front that relays as the live worker does, a back that plays the old worker
keeping a session. A session's end is joined both ways and hears the old worker's
close; an end that leaves is passed on; a watch stays read-only; an old worker that is
gone is a clear refusal."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed

from bastion.access_console import protocol as console
from bastion.network.listeners import serve_private
from bastion.sessions.kept import relay_kept_end, relay_kept_watch
from bastion.sessions.relay import KeptWatch
from bastion.sessions.terminal import REFUSED, WebSocketChannel

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
TOKEN = secrets.token_urlsafe(32)
TERMINAL = f"{console.CONSOLE_API}/sessions/s-1/terminal"
WATCH = f"{console.CONSOLE_API}/live-sessions/s-1/watch"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class OldWorker:
    """What the back saw: first messages, frames, and whether its end left."""

    hellos: list[str] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    left: asyncio.Event = field(default_factory=asyncio.Event)


def back_app(seen: OldWorker) -> Starlette:
    async def terminal(websocket: WebSocket) -> None:
        await websocket.accept()
        hello = await websocket.receive_text()
        seen.hellos.append(hello)
        if console.read_from_console(hello).token != TOKEN:
            await websocket.close(REFUSED, "the token is not this session's")
            return
        await websocket.send_text(console.write(console.Started()))
        try:
            while True:
                data = await websocket.receive_bytes()
                seen.frames.append(data)
                if data == b"exit 3\r":
                    await websocket.send_text(console.write(console.Exited(code=3)))
                    await websocket.close(1000, "the remote shell exited with code 3")
                    return
                await websocket.send_bytes(b"shown: " + data)
        except WebSocketDisconnect:
            seen.left.set()

    async def watch(websocket: WebSocket) -> None:
        await websocket.accept()
        seen.hellos.append(await websocket.receive_text())
        await websocket.send_text(console.write(console.Watching(title="t", cols=80, rows=24)))
        await websocket.send_bytes(b"the screen so far")
        try:
            while True:
                await websocket.receive()
                if websocket.client_state.name == "DISCONNECTED":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        seen.left.set()

    return Starlette(routes=[WebSocketRoute(TERMINAL, terminal), WebSocketRoute(WATCH, watch)])


def front_app(old_socket: str) -> Starlette:
    """Relays as the live worker does once it found the session kept elsewhere."""

    async def terminal(websocket: WebSocket) -> None:
        await websocket.accept()
        channel = WebSocketChannel(websocket)
        first = await channel.receive()
        assert first is not None
        await relay_kept_end(old_socket, websocket.url.path, first, channel, REFUSED)

    async def watch(websocket: WebSocket) -> None:
        await websocket.accept()
        channel = WebSocketChannel(websocket)
        await channel.receive()  # the watcher's hello, with the live worker's own ticket
        kept = KeptWatch("s-1", old_socket, TOKEN, time.monotonic())
        await relay_kept_watch(kept, channel, REFUSED)

    return Starlette(routes=[WebSocketRoute(TERMINAL, terminal), WebSocketRoute(WATCH, watch)])


@dataclass
class Workers:
    front: str
    old: OldWorker


@pytest.fixture
async def workers() -> AsyncIterator[Workers]:
    old_name, front_name = (f"bastion-test-{secrets.token_hex(6)}" for _ in range(2))
    seen = OldWorker()
    back = await serve_private(back_app(seen), old_name)
    front = await serve_private(front_app(old_name), front_name)
    yield Workers(front_name, seen)
    for server, task in (front, back):
        server.should_exit = True
        await task


async def connect(name: str, path: str) -> ClientConnection:
    return await unix_connect("\0" + name, uri=f"ws://worker{path}")


async def closed(ws: ClientConnection) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code, ws.close_reason or ""


async def test_a_late_end_is_joined_both_ways_and_hears_how_the_session_ended(
    workers: Workers,
) -> None:
    hello = console.write(console.ConsoleHello(token=TOKEN))
    async with await connect(workers.front, TERMINAL) as ws:
        await ws.send(hello)
        assert isinstance(console.read_from_site(str(await ws.recv())), console.Started)
        await ws.send(b"echo hi\r")
        assert await ws.recv() == b"shown: echo hi\r"
        await ws.send(b"exit 3\r")
        ended = console.read_from_site(str(await ws.recv()))
        assert isinstance(ended, console.Exited) and ended.code == 3
        assert await closed(ws) == (1000, "the remote shell exited with code 3")
    assert workers.old.hellos == [hello]  # passed on as it came
    assert workers.old.frames == [b"echo hi\r", b"exit 3\r"]


async def test_an_end_that_leaves_leaves_the_old_worker_too(workers: Workers) -> None:
    async with await connect(workers.front, TERMINAL) as ws:
        await ws.send(console.write(console.ConsoleHello(token=TOKEN)))
        await ws.recv()
    await asyncio.wait_for(workers.old.left.wait(), 10)


async def test_the_old_workers_refusal_reaches_the_end(workers: Workers) -> None:
    async with await connect(workers.front, TERMINAL) as ws:
        await ws.send(console.write(console.ConsoleHello(token=secrets.token_urlsafe(32))))
        assert await closed(ws) == (REFUSED, "the token is not this session's")


async def test_a_relayed_watch_is_read_only(workers: Workers) -> None:
    async with await connect(workers.front, WATCH) as ws:
        await ws.send(console.write(console.ConsoleHello(token=secrets.token_urlsafe(32))))
        assert isinstance(console.read_from_site(str(await ws.recv())), console.Watching)
        assert await ws.recv() == b"the screen so far"
        await ws.send(b"rm -rf /\r")
        assert await closed(ws) == (REFUSED, "watching is read-only; typing was refused")
    await asyncio.wait_for(workers.old.left.wait(), 10)
    (hello,) = workers.old.hellos
    assert console.read_from_console(hello).token == TOKEN


async def test_an_old_worker_that_is_gone_is_a_clear_refusal() -> None:
    gone = f"bastion-test-{secrets.token_hex(6)}"
    front_name = f"bastion-test-{secrets.token_hex(6)}"
    front = await serve_private(front_app(gone), front_name)
    try:
        async with await connect(front_name, TERMINAL) as ws:
            await ws.send(console.write(console.ConsoleHello(token=TOKEN)))
            code, reason = await closed(ws)
        assert code == REFUSED
        assert reason.startswith("the previous version keeping this session does not answer")
        assert reason.endswith("cannot be reached any more; start a new one")
    finally:
        front[0].should_exit = True
        await front[1]
