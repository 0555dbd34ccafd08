"""Accepting connections no faster than they can be handshaken.

An event loop that accepts everything the kernel offers starts a TLS handshake for each:
when clients arrive faster than the CPU can handshake them, every handshake slows down,
clients time out, retry, and the gateway spends its CPU on handshakes nobody waits for.
The acceptor instead keeps at most `max_pending` connections between accept and welcome;
the rest wait in the kernel's listening queue, where waiting costs nothing, and are
taken in order as earlier ones settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
ACCEPT_ERROR_PAUSE = 0.5


class Acceptor:
    def __init__(
        self,
        sock: socket.socket,
        tls: ssl.SSLContext,
        factory: Callable[[], asyncio.Protocol],
        max_pending: int,
        handshake_timeout: float,
        send_buffer: int | None,
        counters: Counter[str],
    ) -> None:
        self.sock, self.tls, self.factory = sock, tls, factory
        self.max_pending, self.handshake_timeout = max_pending, handshake_timeout
        self.send_buffer, self.counters = send_buffer, counters
        self.pending = 0
        self._room = asyncio.Event()
        self._room.set()
        self._handshakes: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        """Accept until cancelled."""
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        try:
            while True:
                await self._room.wait()
                try:
                    conn, _ = await loop.sock_accept(self.sock)
                except OSError as error:  # out of file descriptors, most likely
                    log.warning("cannot accept a Jump Client connection: %s", error)
                    await asyncio.sleep(ACCEPT_ERROR_PAUSE)
                    continue
                self._start(conn)
        finally:
            for task in list(self._handshakes):
                task.cancel()

    def _start(self, conn: socket.socket) -> None:
        self.pending += 1
        if self.pending >= self.max_pending:
            self._room.clear()
        task = asyncio.create_task(self._handshake(conn))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: socket.socket) -> None:
        self._tune(conn)
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                self.factory, conn, ssl=self.tls, ssl_handshake_timeout=self.handshake_timeout
            )
        except (OSError, TimeoutError) as error:  # ssl.SSLError is an OSError
            self.counters["tls_failed"] += 1
            log.debug("TLS handshake with a Jump Client failed: %s", error)
            conn.close()
            self.settle()

    def _tune(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.send_buffer is not None:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)

    def settle(self) -> None:
        """One connection left the pending state (welcomed, refused or gone)."""
        self.pending -= 1
        if self.pending < self.max_pending:
            self._room.set()
