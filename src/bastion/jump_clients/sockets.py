"""Listening sockets for several gateway processes serving one address.

The supervisor owns listening sockets and hands them to the gateway processes it starts.
Two ways to let N processes share one address:

- ``shared``: one socket, inherited by every process; all accept from one queue, and
  whichever process is free first takes the next connection.
- ``reuseport``: N sockets bound to the same address with SO_REUSEPORT, one per process;
  the kernel hashes each new connection to one of them, evenly, whatever each is doing.

`bench/bench_gateway_fleet.py --sharing` measures how evenly each spreads a fleet.
"""

from __future__ import annotations

import socket
from typing import Literal

Sharing = Literal["shared", "reuseport"]
BACKLOG = 4096


def _listener(host: str, port: int, reuseport: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def listening_sockets(
    host: str, port: int, processes: int, sharing: Sharing
) -> list[socket.socket]:
    """One socket per gateway process (the same object `processes` times when shared)."""
    if sharing == "shared":
        return [_listener(host, port, reuseport=False)] * processes
    first = _listener(host, port, reuseport=True)
    bound_port = first.getsockname()[1]
    return [first, *(_listener(host, bound_port, reuseport=True) for _ in range(processes - 1))]


def inherited(fd: int) -> socket.socket:
    """The listening socket the supervisor passed as descriptor `fd`."""
    return socket.socket(fileno=fd)
