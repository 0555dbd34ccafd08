"""Watching a session that an install left on the old worker, from the new version.

After a site install the worker of the previous version keeps the remote sessions in
progress until they end (`bastion.supervisor.serving.Serving.retire`), but it no longer
accepts connections: an administrator's watch reaches the live worker. The live worker
asks the supervisor for a watch ticket of the worker that keeps the session, gives the
administrator a ticket of its own for it, and, when the watcher connects, opens the
watch on the old worker's private socket and relays what that worker sends. The watch
is read-only both ways: the watcher's frames are never passed on.
"""

from __future__ import annotations

import asyncio
import contextlib

from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bastion.access_console import protocol as console
from bastion.sessions.relay import Channel, KeptWatch, frame_kind

CONNECT_TIMEOUT = 10.0
MAX_FRAME_BYTES = 1024 * 1024


async def relay_kept(kept: KeptWatch, channel: Channel, refused: int) -> None:
    """Open the watch on the worker that keeps the session and relay its frames to the
    watcher until the session ends there, the watcher leaves, or the watcher sends
    anything (refused: watching is read-only). The old worker's close reason is passed
    on, so the watcher hears why the session ended."""
    path = f"{console.CONSOLE_API}/live-sessions/{kept.session_id}/watch"
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            upstream = await unix_connect(
                "\0" + kept.socket,
                uri=f"ws://worker{path}",
                max_size=MAX_FRAME_BYTES,
                compression=None,
            )
    except (OSError, InvalidHandshake, TimeoutError) as error:
        await channel.close(
            refused, f"the previous version keeping this session does not answer: {error}"[:120]
        )
        return
    async with upstream:
        await upstream.send(console.write(console.ConsoleHello(token=kept.token)))
        down = asyncio.create_task(_down(upstream, channel), name=f"kept watch {kept.session_id}")
        up = asyncio.create_task(channel.receive(), name=f"kept watcher {kept.session_id}")
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        if not up.done():
            up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await up
            return
        said = up.result()
        down.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await down
        if said is not None:
            await channel.close(refused, f"watching is read-only; {frame_kind(said)} was refused")


async def _down(upstream: ClientConnection, channel: Channel) -> None:
    """The old worker's frames to the watcher, then its close code and reason."""
    with contextlib.suppress(ConnectionClosed):
        async for frame in upstream:
            await channel.send(frame)
    code = upstream.close_code if upstream.close_code is not None else 1011
    reason = upstream.close_reason or "the previous version closed the watch"
    await channel.close(1000 if code == 1000 else code, reason)
