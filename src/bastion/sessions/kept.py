"""Reaching, from the new version, a session that an install left on the old worker.

After a site install the worker of the previous version keeps the remote sessions in
progress until they end (`bastion.supervisor.serving.Serving.retire`), but it no longer
accepts connections: every new connection reaches the live worker. Two kinds still
belong to a kept session, and the live worker relays them to the old worker's private
socket (the supervisor says which worker keeps a session):

- an administrator's **watch**: the live worker gets a watch ticket of the old worker's
  through the supervisor, gives the administrator a ticket of its own for it, and relays
  what the old worker sends; read-only both ways, the watcher's frames are never passed
  on;
- a **session's own end that joins after the switch** (a session opened in the seconds
  before it, whose console or Jump Client had not connected yet): its first message is
  passed on as it came, the old worker checks its token as usual, and the two
  connections are joined both ways until either closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bastion.access_console import protocol as console
from bastion.sessions.relay import Channel, KeptWatch, frame_kind
from bastion.supervisor.control_socket import abstract

log = logging.getLogger("bastion.sessions")

CONNECT_TIMEOUT = 10.0
MAX_FRAME_BYTES = 1024 * 1024
NOT_SENT = (1005, 1006, 1015)
"""Close codes that say what happened to a connection but may not be sent on one."""
GONE = (
    "the previous version keeping this session does not answer: the session cannot be "
    "reached any more; start a new one"
)
"""The close reason when the old worker is gone (it fits the 123 bytes a reason may have)."""


async def relay_kept_watch(kept: KeptWatch, channel: Channel, refused: int) -> None:
    """Relay a watch of a kept session until the session ends there, the watcher leaves,
    or the watcher sends anything (refused: watching is read-only). The old worker's
    close reason is passed on, so the watcher hears why the session ended."""
    path = f"{console.CONSOLE_API}/live-sessions/{kept.session_id}/watch"
    upstream = await _open(kept.socket, path, channel, refused)
    if upstream is None:
        return
    async with upstream:
        with contextlib.suppress(ConnectionClosed):  # its close reaches the watcher below
            await upstream.send(console.write(console.ConsoleHello(token=kept.token)))
        down = asyncio.create_task(_down(upstream, channel), name=f"kept watch {kept.session_id}")
        up = asyncio.create_task(channel.receive(), name=f"kept watcher {kept.session_id}")
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        await _cancel(up, down)
        said = up.result() if up.done() and not up.cancelled() else None
        if said is not None:
            await channel.close(refused, f"watching is read-only; {frame_kind(said)} was refused")


async def relay_kept_end(
    name: str, path: str, first: bytes | str, channel: Channel, refused: int
) -> None:
    """Join a session's end (its console or its Jump Client), whose first message was
    `first`, to the worker that keeps the session, both ways, until either closes."""
    upstream = await _open(name, path, channel, refused)
    if upstream is None:
        return
    async with upstream:
        with contextlib.suppress(ConnectionClosed):  # its close reaches the end below
            await upstream.send(first)
        down = asyncio.create_task(_down(upstream, channel), name=f"kept end {path}")
        up = asyncio.create_task(_up(channel, upstream), name=f"kept end {path} up")
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        await _cancel(up, down)


async def _open(name: str, path: str, channel: Channel, refused: int) -> ClientConnection | None:
    """The same WebSocket path on the old worker's private socket; None once the end
    was told the old worker does not answer (and closed)."""
    # Connected by hand, as the supervisor's and the gateways' lines are: uvloop refuses a
    # path in the abstract namespace (EINVAL), asyncio's loop takes it.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await asyncio.get_running_loop().sock_connect(sock, abstract(name))
            return await unix_connect(
                sock=sock, uri=f"ws://worker{path}", max_size=MAX_FRAME_BYTES, compression=None
            )
    except (OSError, InvalidHandshake, TimeoutError) as error:
        sock.close()
        log.warning("The previous version keeping %s does not answer: %r", path, error)
        await channel.close(refused, GONE)
        return None


async def _down(upstream: ClientConnection, channel: Channel) -> None:
    """The old worker's frames to this end, then its close code and reason."""
    with contextlib.suppress(ConnectionClosed):
        async for frame in upstream:
            await channel.send(frame)
    code = upstream.close_code
    if code is None or code in NOT_SENT:
        code = 1011
    reason = upstream.close_reason or "the previous version closed the connection"
    await channel.close(code, reason)


async def _up(channel: Channel, upstream: ClientConnection) -> None:
    """This end's frames to the old worker, until this end leaves (the caller then closes
    the old worker's side, as if it had left there)."""
    with contextlib.suppress(ConnectionClosed):
        while (frame := await channel.receive()) is not None:
            await upstream.send(frame)


async def _cancel(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
