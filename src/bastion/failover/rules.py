"""Failover rules, free of I/O: what a pair may be established with, and the
inter-appliance key's challenge and response (HMAC-SHA256, both directions).

The key never travels. Each side proves it holds it by an HMAC over a challenge the
other side chose: the caller asks for a challenge (stateless: a time, a random part and
the answering appliance's MAC over them), answers it with a nonce of its own and its
proof, and gets back the other side's proof over the same pair and a short-lived
ticket for the requests that follow.

Both proofs are bound to the TLS connection: they cover the SHA-256 of the certificate
the caller was served (`BINDING`, as RFC 5929's tls-server-end-point), and the
answering appliance accepts only its own certificate there. Something in between that
ends TLS with a certificate of its own (an interception proxy, an attacker) cannot pass
a caller's proof on to the real appliance, and so never gets a ticket. A proof without
the binding, as earlier builds made it, is refused; a caller still makes one for a
peer whose challenge does not offer the binding (an earlier build, which cannot check
it anyway).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

KEY_MIN_LENGTH = 16
KEY_MAX_LENGTH = 1024
CHALLENGE_SECONDS = 60
TICKET_SECONDS = 300
CLOCK_TOLERANCE_SECONDS = 30
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class FailoverError(Exception):
    """A failover operation was refused or failed; the message says why and what to do."""


class PeerRefusedError(FailoverError):
    """The peer answered, and said no (another key, another version, another role)."""


class PeerUnreachableError(FailoverError):
    """The peer could not be reached, or its answer could not be read."""


class Role(StrEnum):
    NONE = "none"
    PRIMARY = "primary"
    BACKUP = "backup"


# -- the inter-appliance key -------------------------------------------------------------


def key_problems(key: str) -> list[str]:
    if len(key) < KEY_MIN_LENGTH:
        return [f"The inter-appliance key must be at least {KEY_MIN_LENGTH} characters long."]
    if len(key) > KEY_MAX_LENGTH:
        return [f"The inter-appliance key may be at most {KEY_MAX_LENGTH} characters long."]
    if key != key.strip() or not key.isprintable():
        return ["The inter-appliance key must be printable, without leading or trailing spaces."]
    return []


def _mac(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).hexdigest()


def stamp(key: bytes, purpose: str, now: int, random_part: str) -> str:
    """A token only a holder of `key` can make: "<time>.<random>.<mac>"."""
    return f"{now}.{random_part}.{_mac(key, purpose, str(now), random_part)}"


def stamp_valid(key: bytes, purpose: str, token: str, now: int, lifetime: int) -> bool:
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit():
        return False
    issued = int(parts[0])
    if not issued <= now + 1 or now - issued > lifetime:
        return False
    return hmac.compare_digest(parts[2], _mac(key, purpose, parts[0], parts[1]))


BINDING = "certificate-sha256"
"""How proofs are bound to the connection: the SHA-256 (hex) of the served certificate."""


def caller_proof(key: bytes, challenge: str, nonce: str, certificate: str) -> str:
    """The caller's proof over the challenge, its nonce and the certificate it was served
    (empty: the unbound proof an earlier build answers to)."""
    if not certificate:
        return _mac(key, "caller-proof", challenge, nonce)
    return _mac(key, "bound-caller-proof", challenge, nonce, certificate)


def answer_proof(key: bytes, challenge: str, nonce: str, certificate: str) -> str:
    if not certificate:
        return _mac(key, "answer-proof", challenge, nonce)
    return _mac(key, "bound-answer-proof", challenge, nonce, certificate)


def proof_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


# -- establishing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def address_problems(field: str, host: str, port: int, site_hostname: str) -> list[str]:
    host = host.strip()
    if not host:
        return [f"The {field} host is empty; give the appliance's own address or hostname."]
    if not _is_host(host):
        return [f"The {field} host {host!r} is not a hostname or an IP address."]
    if host.lower().rstrip(".") == site_hostname.lower().rstrip("."):
        return [
            f"The {field} host is the shared site hostname {site_hostname!r}; give the "
            "appliance's own address, which stays with it when the site hostname moves."
        ]
    if not 1 <= port <= 65535:
        return [f"The {field} port {port} is not a TCP port (1 to 65535)."]
    return []


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return HOSTNAME.match(host.removesuffix(".")) is not None
    return True


def version_problem(mine: str, theirs: str, peer: str) -> str | None:
    if mine == theirs:
        return None
    return (
        f"{peer} runs site version {theirs}, this appliance {mine}; a pair must run the same "
        "version. Update one of them, then establish again."
    )


def clock_problem(mine: float, theirs: float, peer: str) -> str | None:
    off = theirs - mine
    if abs(off) <= CLOCK_TOLERANCE_SECONDS:
        return None
    return (
        f"{peer}'s clock is {abs(off):.0f} s {'ahead of' if off > 0 else 'behind'} this "
        f"appliance's (at most {CLOCK_TOLERANCE_SECONDS} s is allowed); set both to the "
        "same NTP server, then establish again."
    )


def database_problem(dialect: str) -> str | None:
    if dialect in ("sqlite", "postgresql"):
        return None
    return (
        "Failover pairs need the embedded SQLite database or PostgreSQL; this appliance "
        f"stores its data in {dialect}, for which no change journal is built."
    )
