"""Appliance download keys (R24, R26).

A download key is ``BDK1.<payload>.<signature>``: base64url of a JSON
payload naming the site, the appliance, its installed versions and its clock,
and base64url of an Ed25519 signature over the payload bytes made with the
appliance's own key. The update service knows each appliance's public key
(enrolment) and verifies the signature before anything else.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PREFIX = "BDK1"


class DownloadKeyFormatError(ValueError):
    """The text is not a download key, or its signature does not verify."""


@dataclass(frozen=True)
class DownloadKey:
    site: str
    appliance: str
    installed: dict[str, str]
    clock: dt.datetime
    nonce: str

    def payload(self) -> bytes:
        body = {
            "site": self.site,
            "appliance": self.appliance,
            "installed": self.installed,
            "clock": self.clock.astimezone(dt.UTC).isoformat(),
            "nonce": self.nonce,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_appliance_key(path: Path) -> str:
    """Create the appliance's private key file (mode 0600); return its public key text."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return public_key_text(key.public_key())


def load_appliance_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise DownloadKeyFormatError(f"{path} is not an Ed25519 private key")
    return key


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _b64(raw)


def parse_public_key(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(_unb64(text.strip()))
    except ValueError as exc:
        raise DownloadKeyFormatError(f"not an Ed25519 public key: {exc}") from exc


def encode(key: DownloadKey, private_key: Ed25519PrivateKey) -> str:
    payload = key.payload()
    return f"{PREFIX}.{_b64(payload)}.{_b64(private_key.sign(payload))}"


def make_download_key(
    private_key: Ed25519PrivateKey,
    site: str,
    appliance: str,
    installed: dict[str, str],
    clock: dt.datetime | None = None,
) -> str:
    """The text an administrator copies from the Updates page."""
    now = clock or dt.datetime.now(dt.UTC)
    return encode(DownloadKey(site, appliance, installed, now, secrets.token_hex(8)), private_key)


def peek(text: str) -> DownloadKey:
    """Parse without verifying: only to find whose key to verify with."""
    parts = text.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise DownloadKeyFormatError("this is not an appliance download key (BDK1.….…)")
    try:
        body = json.loads(_unb64(parts[1]))
        clock = dt.datetime.fromisoformat(body["clock"])
        return DownloadKey(
            body["site"], body["appliance"], dict(body["installed"]), clock, body["nonce"]
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DownloadKeyFormatError(f"the download key is damaged: {exc}") from exc


def verify(text: str, public_key: Ed25519PublicKey) -> DownloadKey:
    """Return the key's content if its signature verifies with ``public_key``."""
    key = peek(text)
    _, payload, signature = text.strip().split(".")
    try:
        public_key.verify(_unb64(signature), _unb64(payload))
    except (InvalidSignature, ValueError) as exc:
        raise DownloadKeyFormatError(
            "the download key's signature does not verify: it was altered or not made by "
            f"appliance {key.appliance!r}"
        ) from exc
    return key
