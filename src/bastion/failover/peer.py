"""The other appliance of a pair, over HTTPS: prove the inter-appliance key both ways,
then ask with the ticket that earns.

Each appliance has its own certificate, usually from its own internal CA, so the
certificate is not checked against a CA: the first connection records its SHA-256
fingerprint (taken only once the peer proved it holds the key), and every later
connection must show that one or another the caller allows
(`FailoverSetup.peer_certificates`: the certificate it serves itself, which a restarted
peer serves once a sync made it the pair's).
"""

from __future__ import annotations

import hashlib
import secrets
import ssl
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from bastion.failover import rules
from bastion.failover.rules import PeerAddress, PeerRefusedError, PeerUnreachableError

PEER_PREFIX = "/api/v1/failover/peer"
TICKET_HEADER = "X-Bastion-Peer-Ticket"
CONNECT_SECONDS = 10.0
READ_SECONDS = 120.0


@dataclass(frozen=True)
class Introduction:
    """What the peer said of itself while both sides proved the key."""

    ticket: str
    fingerprint: str
    version: str
    time: float
    role: str
    appliance: str


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the fingerprint is checked instead; see above
    return context


def _fingerprint(response: httpx.Response) -> str:
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    der = ssl_object.getpeercert(True) if ssl_object is not None else None
    if not der:
        raise PeerUnreachableError("The peer's TLS certificate could not be read.")
    return hashlib.sha256(der).hexdigest()


class PeerClient:
    """Requests to one peer appliance; `pinned`: the fingerprints it may show (one
    certificate's, or those of `FailoverSetup.peer_certificates`)."""

    def __init__(
        self,
        address: PeerAddress,
        key: bytes,
        pinned: str | Collection[str] | None = None,
        connect_seconds: float = CONNECT_SECONDS,
    ) -> None:
        self.address = address
        self._key = key
        self._pinned = frozenset([pinned] if isinstance(pinned, str) else pinned or ())
        self._pins = pinned is not None
        self._ticket = ""
        timeout = httpx.Timeout(READ_SECONDS, connect=connect_seconds)
        self._http = httpx.Client(base_url=f"https://{address}", verify=_context(), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PeerClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return f"The peer appliance at {self.address}"

    def introduce(self) -> Introduction:
        """Challenge and response, both ways; the ticket is kept for the requests after."""
        with self._stream("POST", "/challenge", json={}) as response:
            served = _fingerprint(response)
            asked = self._answer(response)
        challenge, nonce = str(asked.get("challenge", "")), secrets.token_hex(16)
        # Bound to the certificate served (see `rules`); unbound only for an earlier build.
        certificate = served if asked.get("binding") == rules.BINDING else ""
        proof = rules.caller_proof(self._key, challenge, nonce, certificate)
        body = {"challenge": challenge, "nonce": nonce, "proof": proof}
        if certificate:
            body |= {"binding": rules.BINDING, "certificate": certificate}
        with self._stream("POST", "/prove", json=body) as response:
            seen = _fingerprint(response)
            answer = self._answer(response)
        if seen != served:
            raise PeerUnreachableError(
                f"{self.name} showed another TLS certificate for the proof than for its "
                "challenge (it changed its certificate just then, or something in between "
                "did); try again."
            )
        expected = rules.answer_proof(self._key, challenge, nonce, certificate)
        if not rules.proof_matches(expected, str(answer.get("proof", ""))):
            raise PeerRefusedError(
                f"{self.name} could not prove it holds the same inter-appliance key; set the "
                "same key on both appliances (Management > Security)."
            )
        self._check_pin(seen)
        self._pinned, self._pins, self._ticket = frozenset([seen]), True, str(answer["ticket"])
        return Introduction(
            self._ticket,
            seen,
            str(answer["version"]),
            float(answer["time"]),
            str(answer["role"]),
            str(answer.get("appliance", "")),
        )

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if not self._ticket:
            self.introduce()
        return self._json(method, path, **kwargs)

    @contextmanager
    def download(self, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        if not self._ticket:
            self.introduce()
        with self._stream("GET", path, **kwargs) as response:
            self._answer(response, read=False)
            yield response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with self._stream(method, path, **kwargs) as response:
            return self._answer(response)

    @contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        headers = dict(kwargs.pop("headers", {}))
        if self._ticket:
            headers[TICKET_HEADER] = self._ticket
        try:
            with self._http.stream(
                method, PEER_PREFIX + path, headers=headers, **kwargs
            ) as response:
                if self._pins:
                    self._check_pin(_fingerprint(response))
                yield response
        except httpx.HTTPError as error:
            raise PeerUnreachableError(
                f"{self.name} cannot be reached ({type(error).__name__}: {error}); check the "
                "address and port, and that nothing between the appliances blocks it."
            ) from None

    def _check_pin(self, seen: str) -> None:
        if self._pins and seen not in self._pinned:
            raise PeerRefusedError(
                f"{self.name} shows another TLS certificate than when the pair was "
                f"established (SHA-256 {seen[:16]}…, expected {_first(self._pinned)}…); if its "
                "certificate was replaced, establish the pair again."
            )

    def _answer(self, response: httpx.Response, read: bool = True) -> dict[str, Any]:
        if response.status_code < 300:
            if not read:
                return {}
            response.read()
            return dict(response.json())
        response.read()
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status_code}"
        if response.status_code == 404 and "error" not in response.text:
            message = "it does not know failover pairs (older software?)"
        raise PeerRefusedError(f"{self.name} refused: {message}")


def _first(fingerprints: frozenset[str]) -> str:
    return " or ".join(sorted(f[:16] for f in fingerprints))


def clock_now() -> float:
    return time.time()
