"""Listen addresses, the listening TCP sockets the supervisor owns, and what to tell an
administrator when one cannot be opened."""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass


class ListenAddressError(ValueError):
    """A listen address was refused; the message says how to write a valid one."""


@dataclass(frozen=True, order=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen_address(text: str) -> ListenAddress:
    """Parse `ADDR:PORT` (IPv6 as `[ADDR]:PORT`) into a normalised address."""
    raw = text.strip()
    host, sep, port_text = raw.rpartition(":")
    if not sep or not host:
        raise ListenAddressError(f"{raw!r} is not ADDR:PORT, for example 127.0.0.1:8443.")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ListenAddressError(
            f"{host!r} is not an IP address; give the numeric address, for example 192.0.2.10."
        ) from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ListenAddressError(f"{port_text!r} is not a TCP port between 1 and 65535.")
    return ListenAddress(str(address), int(port_text))


class ListenError(Exception):
    """An address could not be bound; the message says why in an administrator's words."""


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
