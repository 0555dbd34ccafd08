"""Long downloads to readers that may stop reading.

A server's send waits while the connection's write buffer is full, and a reader that
stops reading (its receive window closed) keeps it full: the send would wait until the
connection dies, holding whatever the download holds. `GuardedStream` gives each send
a stall limit; a send with no progress for that long aborts the connection (not a
polite close, which would itself wait for the buffer to be read; a reset, so that the
kernel does not keep the unsent bytes for the reader either) and says so to its
`on_stall`.

Aborting needs the connection's transport, which ASGI does not pass to an application:
`ExposeAbort`, wrapped around the whole application where the server is given it, puts
the transport's `abort` into the request's scope (`scope["extensions"][ABORT]`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

ABORT = "bastion.abort"
"""The key of the connection's abort in a request's `scope["extensions"]`."""
DISCONNECT_WAIT = 1.0
"""How long a stalled answer waits for the server to see its aborted connection."""

OnStall = Callable[[float], Awaitable[None]]
"""Told the stall limit that passed, after the connection was aborted."""


class ExposeAbort:
    """Puts each HTTP connection's abort into its requests' scope (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if callable(getattr(transport, "abort", None)):  # asyncio's transports, uvloop's
                abort = partial(_reset, transport)
                scope["extensions"] = {**(scope.get("extensions") or {}), ABORT: abort}
        await self.app(scope, receive, send)


def _reset(transport: Any) -> None:
    """Abort the connection and drop what the kernel still holds for it (a reset): an
    aborted socket's unsent bytes would otherwise still wait for the reader that stopped."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def abort_connection(scope: Scope) -> bool:
    """Abort the request's connection at once; False if the server gave no way to."""
    abort = (scope.get("extensions") or {}).get(ABORT)
    if abort is None:
        return False
    abort()
    return True


class GuardedStream(Response):
    """A streamed answer whose every send must make progress within `stall_seconds`."""

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        stall_seconds: float,
        on_stall: OnStall,
        headers: Mapping[str, str] | None = None,
        media_type: str = "application/octet-stream",
    ) -> None:
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)  # as a StreamingResponse: no body, so no length made up
        self.chunks = chunks
        self.stall_seconds = stall_seconds
        self.on_stall = on_stall

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            if await self._stream(send, gone):
                abort_connection(scope)
                await self.on_stall(self.stall_seconds)
                await asyncio.wait({gone}, timeout=DISCONNECT_WAIT)  # the server sees it
        finally:
            gone.cancel()

    async def _stream(self, send: Send, gone: asyncio.Future[None]) -> bool:
        """Send it all, or until the reader leaves (False); True when a send stalled."""
        start = {"type": "http.response.start", "status": self.status_code}
        await send(start | {"headers": self.raw_headers})
        async with contextlib.aclosing(self.chunks) as chunks:  # its file closes at once
            async for chunk in chunks:
                if gone.done():
                    return False
                body = {"type": "http.response.body", "body": chunk, "more_body": True}
                if not await self._sent(send, body):
                    return True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return False

    async def _sent(self, send: Send, message: dict[str, Any]) -> bool:
        try:
            await asyncio.wait_for(send(message), self.stall_seconds)
        except TimeoutError:
            return False
        return True


async def _disconnected(receive: Receive) -> None:
    """Return once the server says the connection is gone."""
    while (await receive())["type"] != "http.disconnect":
        pass
