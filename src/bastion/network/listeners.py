"""Serve one ASGI app on any number of addresses, opened and closed while it runs.

Each address gets its own uvicorn server sharing the app and one TLS context.
The app's lifespan is run by the appliance itself, once, not per address. Each request
may abort its connection (`platform.web.streaming`), for readers that stop reading.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import uvicorn

from bastion.agents.protocol import MAX_FRAME_BYTES
from bastion.platform.web.streaming import ExposeAbort
from bastion.supervisor.sockets import ListenAddress, ListenError, bind

log = logging.getLogger(__name__)
UVICORN_LOG_LEVEL = "warning"
"""Each address, and the worker's control socket, is a uvicorn server of its own: their
"Started server process" and "Shutting down" lines would repeat once per server. This
module logs what opens and closes, once; uvicorn still logs its warnings and errors."""
FIRST_REQUEST_GRACE = 0.5
"""Seconds a connection accepted just before a listener closes has to send its request."""


WS_MAX_SIZE = 2 * MAX_FRAME_BYTES
"""A WebSocket message (a session's frame) larger than this closes its connection (1009)."""


class UvicornListeners:
    """The appliance's listeners; implements `bastion.platform.ports.Listeners`."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        binder: Callable[[ListenAddress], socket.socket] = bind,
        releaser: Callable[[ListenAddress], None] | None = None,
    ) -> None:
        """`binder` gives the socket for an address (bound here, or handed over by the
        supervisor); `releaser` is told when an administrator closes an address for good."""
        self._app: Any = None
        self._ssl = ssl_context
        self._bind = binder
        self._release = releaser
        self._servers: dict[ListenAddress, tuple[uvicorn.Server, asyncio.Task[None]]] = {}

    def attach(self, app: Any) -> None:
        """The app to serve; given after construction because the app needs the listeners."""
        self._app = app

    def active(self) -> list[ListenAddress]:
        return sorted(self._servers)

    async def open(self, address: ListenAddress) -> None:
        if address in self._servers:
            return
        sock = await asyncio.to_thread(self._bind, address)
        server = uvicorn.Server(self._config())
        task = asyncio.create_task(self._run(server, sock), name=f"listener {address}")
        self._servers[address] = (server, task)
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            self._servers.pop(address, None)
            raise ListenError(f"Could not start serving on {address}; see the appliance log.")
        log.info("serving on %s", address)

    async def close(self, address: ListenAddress) -> None:
        """Stop serving on `address` for good (an administrator disabled it)."""
        await self._stop(address)
        if self._release is not None:
            await asyncio.to_thread(self._release, address)

    def hand_over(self) -> None:
        """An install's new worker serves the same sockets from now on: accept nothing
        more, and close each HTTP connection that is idle after an answer, so that the
        client's next request opens a connection the new worker accepts. Left open, a
        pooled keep-alive connection would be served by this (older) version until the
        process ends. A request in progress is answered, then its connection closes. A
        connection accepted a moment ago has sent nothing yet: it keeps its
        FIRST_REQUEST_GRACE (`stop_accepting`)."""
        self._close_listening()
        self._end_http(answered_only=True)

    async def stop_accepting(self) -> None:
        """Accept no new connection anywhere; those open are served on. After an install's
        switch the new worker accepts on the same sockets."""
        self._close_listening()
        await asyncio.sleep(FIRST_REQUEST_GRACE)

    async def close_idle(self) -> None:
        """Close every connection but WebSockets (a retiring worker keeps only its remote
        sessions): an HTTP connection closes once its request in progress is answered."""
        self._end_http(answered_only=False)

    def _close_listening(self) -> None:
        for server, _task in self._servers.values():
            for listening in getattr(server, "servers", []):
                listening.close()

    def _end_http(self, answered_only: bool) -> None:
        """Close each HTTP connection once its request in progress (if any) is answered;
        `answered_only`: leave those that have not sent a first request yet."""
        for server, _task in self._servers.values():
            for connection in list(server.server_state.connections):
                if not hasattr(connection, "cycle"):  # a WebSocket (HTTP protocols have one)
                    continue
                cycle = connection.cycle
                if cycle is None and answered_only:
                    continue
                connection.shutdown()
                transport = getattr(connection, "transport", None)
                if transport is not None and (cycle is None or cycle.response_complete):
                    transport.abort()  # idle: no close_notify to wait for (see below)

    async def close_all(self, at_once: bool = False) -> None:
        """Stop serving everywhere (the process ends); the addresses stay enabled.
        `at_once`: wait for no connection (a retired worker whose sessions have ended:
        what it still holds came before the switch, and the new version serves it)."""
        await asyncio.gather(*(self._stop(a, at_once) for a in list(self._servers)))

    async def _stop(self, address: ListenAddress, at_once: bool = False) -> None:
        entry = self._servers.pop(address, None)
        if entry is None:
            return
        server, task = entry
        # Stop accepting first, and give connections accepted a moment ago the time to send
        # their request: closed at once, they would fail, though another worker (after an
        # install's switch) serves the same socket.
        for listening in getattr(server, "servers", []):
            listening.close()
        await asyncio.sleep(FIRST_REQUEST_GRACE)
        server.should_exit = True
        server.force_exit = at_once
        await _cut_idle_connections(server, task)
        log.info("stopped serving on %s", address)

    def _config(self) -> uvicorn.Config:
        context = self._ssl
        factory = (lambda _config, _default: context) if context is not None else None
        return uvicorn.Config(
            ExposeAbort(self._app),  # a stalled download can abort its connection
            lifespan="off",
            log_config=None,
            log_level=UVICORN_LOG_LEVEL,
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=10,
            ssl_context_factory=factory,
            server_header=False,
            ws_max_size=WS_MAX_SIZE,
            ws_max_queue=1,
        )

    @staticmethod
    async def _run(server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            # `_serve` is `serve` without taking over the process's signal handlers,
            # which the appliance owns.
            await server._serve(sockets=[sock])
        finally:
            sock.close()


async def _cut_idle_connections(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Wait for the server to stop, cutting keep-alive connections it closes while idle.

    uvicorn closes idle connections politely; on TLS, asyncio then waits up to 30 s for
    the client's close_notify, which an idle pooled client never sends, and the worker
    would wait out its whole graceful shutdown. Requests in progress keep their grace.
    """
    while not task.done():
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            cycle = getattr(connection, "cycle", None)
            idle = cycle is None or cycle.response_complete
            if transport is not None and transport.is_closing() and idle:
                transport.abort()
        await asyncio.wait({task}, timeout=0.05)
    await task


def warm_up_servers() -> None:
    """Import the protocol, loop and lifespan modules uvicorn loads when a server starts."""
    uvicorn.Config(_no_app, lifespan="off", log_config=None).load()


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("warm_up_servers' placeholder app serves nothing")


async def serve_private(app: Any, name: str) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Serve `app` without TLS on the abstract Unix socket `name` (the supervisor's line)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(b"\0" + name.encode())  # the abstract namespace: no file, no path limit
    sock.listen(16)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        log_level=UVICORN_LOG_LEVEL,
        access_log=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(UvicornListeners._run(server, sock), name="worker control")
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    return server, task
