"""Authenticated wakes for passive Jump Clients.

A passive client holds no connection; it listens on a local TCP port, and the site (or
something relaying for it) sends it a `WakeCall` there to make it check in at once.
Anyone can reach that port, so a call counts only if it carries an HMAC-SHA256 under
the client's wake key:

    mac = HMAC(wake_key, b"bastion jump client wake v1\\0" + client_id + b"\\0"
                         + issued_at + b"\\0" + nonce)

The wake key is derived by the site from its wake secret and the client id (HKDF), so
any gateway process can make calls without storing a key per client, and it is given to
the client in `welcome` over the authenticated TLS connection (the client keeps it in
memory; it learns it again at every check-in). The client refuses calls for another
client, calls more than `freshness` seconds from its clock, and nonces it has seen, so
a recorded call cannot be replayed to make it connect again and again.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Callable
from hashlib import sha256
from typing import cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.agents.errors import ProtocolError, WakeRefusedError
from bastion.agents.protocol import Codec, WakeCall, decode_bytes, encode_bytes

WAKE_CONTEXT = b"bastion jump client wake v1\0"
FRESHNESS = 300.0
MAX_REMEMBERED = 4096
MAX_CALL = 1024
CALL_TIMEOUT = 5.0


def wake_key(site_secret: bytes, client_id: str) -> bytes:
    """The key that authenticates wakes for `client_id` (32 bytes)."""
    info = b"bastion wake key v1\0" + client_id.encode()
    return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(site_secret)


def _mac(key: bytes, client_id: str, issued_at: int, nonce: str) -> bytes:
    data = b"\0".join([client_id.encode(), str(issued_at).encode(), nonce.encode()])
    return hmac.new(key, WAKE_CONTEXT + data, sha256).digest()


def make_wake(key: bytes, client_id: str, now: float) -> WakeCall:
    """A wake call for `client_id`, made by the site at unix time `now`."""
    nonce = encode_bytes(secrets.token_bytes(32))
    issued_at = int(now)
    mac = _mac(key, client_id, issued_at, nonce)
    return WakeCall(client_id=client_id, issued_at=issued_at, nonce=nonce, mac=encode_bytes(mac))


class WakeGuard:
    """The client's check of incoming wake calls; remembers nonces while they are fresh."""

    def __init__(self, client_id: str, freshness: float = FRESHNESS) -> None:
        self.client_id = client_id
        self.freshness = freshness
        self.key: bytes | None = None
        self._seen: dict[str, float] = {}

    def check(self, call: WakeCall, now: float) -> None:
        """Return if `call` is a fresh, authentic wake for us; raise `WakeRefusedError`."""
        if self.key is None:
            raise WakeRefusedError("no wake key yet: this client has not checked in since start")
        if call.client_id != self.client_id:
            raise WakeRefusedError(f"the call is for {call.client_id}, not {self.client_id}")
        expected = _mac(self.key, call.client_id, call.issued_at, call.nonce)
        if not hmac.compare_digest(expected, decode_bytes(call.mac)):
            raise WakeRefusedError("the call is not signed with this client's wake key")
        if abs(now - call.issued_at) > self.freshness:
            raise WakeRefusedError("the call is stale (or one of the clocks is wrong)")
        self._remember(call.nonce, now)

    def _remember(self, nonce: str, now: float) -> None:
        self._seen = {n: t for n, t in self._seen.items() if now - t <= 2 * self.freshness}
        if nonce in self._seen:
            raise WakeRefusedError("the call was seen before (a replay)")
        if len(self._seen) >= MAX_REMEMBERED:
            raise WakeRefusedError("too many wakes in a short time; ignoring until they age")
        self._seen[nonce] = now


class WakeListener(asyncio.Protocol):
    """One connection to a passive client's wake port: a single JSON line, checked.

    Answers ``ok`` or ``refused: <why>`` and closes; reads at most `MAX_CALL` bytes so
    that nobody can make the client hold data.
    """

    def __init__(self, guard: WakeGuard, codec: Codec, wake: Callable[[], None]) -> None:
        self.guard, self.codec, self.wake = guard, codec, wake
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        asyncio.get_running_loop().call_later(CALL_TIMEOUT, self.transport.abort)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\n" in self.buffer or len(self.buffer) > MAX_CALL:
            self._answer(self.buffer.split(b"\n", 1)[0][:MAX_CALL])

    def _answer(self, line: bytes) -> None:
        assert self.transport is not None
        try:
            self.guard.check(self.codec.read_wake(line), time.time())
        except (WakeRefusedError, ProtocolError) as error:
            self.transport.write(f"refused: {error}\n".encode())
        else:
            self.transport.write(b"ok\n")
            self.wake()
        self.transport.close()


async def send_wake(host: str, port: int, call: WakeCall, timeout: float = 5.0) -> str:
    """Deliver `call` to a passive client's wake port; its answer (``ok`` or why not).
    Written in the oldest version the site speaks: the call has no later field, and a
    client one version behind must be woken to be upgraded."""
    codec = Codec()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(codec.write(call, codec.accepted.start).encode() + b"\n")
            await writer.drain()
            answer = await reader.readline()
        finally:
            writer.close()
    return answer.decode(errors="replace").strip()
