"""Serve one ASGI app on any number of addresses, opened and closed while it runs.

Each address gets its own uvicorn server sharing the app and one TLS context.
The app's lifespan is run by the appliance itself, once, not per address.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from typing import Any

import uvicorn

from bastion.domain.network import ListenAddress
from bastion.services.ports import ListenError

log = logging.getLogger(__name__)


def bind(address: ListenAddress) -> socket.socket:
    """A listening TCP socket on `address`, or a `ListenError` that says what to do."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    # Naming the protocol lets asyncio turn Nagle off on accepted connections; without it a
    # response written as headers then body waits for the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((address.host, address.port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise ListenError(_explain(address, error)) from None
    sock.set_inheritable(True)
    return sock


def _explain(address: ListenAddress, error: OSError) -> str:
    if error.errno == errno.EADDRNOTAVAIL:
        return (
            f"This machine has no network address {address.host}; "
            "add it to a network interface first, or choose one of its addresses."
        )
    if error.errno == errno.EADDRINUSE:
        return f"Another program already listens on {address}; stop it or choose another port."
    if error.errno == errno.EACCES:
        return f"Port {address.port} needs privileges this process lacks; choose a port above 1023."
    return f"Cannot listen on {address}: {error.strerror or error}."


class UvicornListeners:
    """The appliance's listeners; implements `bastion.services.ports.Listeners`."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self._app: Any = None
        self._ssl = ssl_context
        self._servers: dict[ListenAddress, tuple[uvicorn.Server, asyncio.Task[None]]] = {}

    def attach(self, app: Any) -> None:
        """The app to serve; given after construction because the app needs the listeners."""
        self._app = app

    def active(self) -> list[ListenAddress]:
        return sorted(self._servers)

    async def open(self, address: ListenAddress) -> None:
        if address in self._servers:
            return
        sock = bind(address)
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
        entry = self._servers.pop(address, None)
        if entry is None:
            return
        server, task = entry
        server.should_exit = True
        await task
        log.info("stopped serving on %s", address)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(a) for a in list(self._servers)))

    def _config(self) -> uvicorn.Config:
        context = self._ssl
        factory = (lambda _config, _default: context) if context is not None else None
        return uvicorn.Config(
            self._app,
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=10,
            ssl_context_factory=factory,
            server_header=False,
        )

    @staticmethod
    async def _run(server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            # `_serve` is `serve` without taking over the process's signal handlers,
            # which the appliance owns.
            await server._serve(sockets=[sock])
        finally:
            sock.close()
