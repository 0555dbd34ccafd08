"""Listening TCP sockets, and what to tell an administrator when one cannot be opened."""

from __future__ import annotations

import errno
import socket

from bastion.domain.network import ListenAddress
from bastion.services.ports import ListenError


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
