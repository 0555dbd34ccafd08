"""Listen addresses: what an administrator may type and how it is normalised."""

from __future__ import annotations

import ipaddress
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
