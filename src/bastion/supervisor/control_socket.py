"""The supervisor's control socket: one JSON line each way, listening sockets passed as fds.

Workers ask the supervisor for the sockets they serve on; the console
(`bastion appliance install`) and the web pages (through their worker) ask it
to install releases and for the install's progress. The socket lives in
Linux's abstract namespace, named after the data directory, so no path length
or stale file gets in the way; every connection's peer must run as the same
user, checked with SO_PEERCRED.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

MAX_MESSAGE = 1 << 20

Reply = tuple[dict[str, Any], list[int]]
Handler = Callable[[dict[str, Any]], Awaitable[Reply]]


class SupervisorUnavailable(Exception):
    """No supervisor answers for this data directory."""


class SupervisorRefused(Exception):
    """The supervisor answered with an error; the message is the supervisor's."""


def socket_name(data_dir: Path, role: str = "supervisor") -> str:
    """An abstract socket name unique to one data directory (and role)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:20]
    return f"bastion-{digest}-{role}"


def abstract(name: str) -> bytes:
    """The socket address of `name` in the abstract namespace (a leading NUL byte)."""
    return b"\0" + name.encode()


def call(name: str, message: dict[str, Any], timeout: float = 30.0) -> Reply:
    """Send one request and wait for its answer; raise if refused or unreachable."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(abstract(name))
        except (FileNotFoundError, ConnectionRefusedError):
            raise SupervisorUnavailable(
                "No appliance supervisor is running for this data directory; "
                "start it with `bastion appliance serve`."
            ) from None
        sock.sendall(json.dumps(message).encode() + b"\n")
        data, fds = b"", []
        while not data.endswith(b"\n"):
            chunk, received, _flags, _address = socket.recv_fds(sock, 65536, 8)
            fds += received
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_MESSAGE:
                raise SupervisorRefused("the supervisor's answer is too long")
    if not data:
        raise SupervisorUnavailable("The supervisor closed the connection without answering.")
    reply = json.loads(data)
    if not reply.get("ok"):
        for fd in fds:
            os.close(fd)
        raise SupervisorRefused(str(reply.get("error", "refused")))
    return reply, fds


def _same_user(sock: socket.socket) -> bool:
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return bool(uid == os.getuid())


async def serve(name: str, handler: Handler) -> asyncio.Task[None]:
    """Answer requests on `name` with `handler` until the returned task is cancelled."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(abstract(name))
    listener.listen(64)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()

    async def answer(conn: socket.socket) -> None:
        with conn:
            try:
                if not _same_user(conn):
                    return
                data = b""
                while not data.endswith(b"\n") and len(data) < MAX_MESSAGE:
                    chunk = await loop.sock_recv(conn, 65536)
                    if not chunk:
                        return
                    data += chunk
                try:
                    reply, fds = await handler(json.loads(data))
                except Exception as error:  # any failure becomes the caller's error message
                    reply, fds = {"ok": False, "error": str(error)}, []
                conn.setblocking(True)
                socket.send_fds(conn, [json.dumps(reply).encode() + b"\n"], fds)
            except OSError:
                return

    async def accept() -> None:
        with listener:
            pending: set[asyncio.Task[None]] = set()
            while True:
                conn, _ = await loop.sock_accept(listener)
                conn.setblocking(False)
                task = asyncio.create_task(answer(conn))
                pending.add(task)
                task.add_done_callback(pending.discard)

    return asyncio.create_task(accept(), name="supervisor control")
