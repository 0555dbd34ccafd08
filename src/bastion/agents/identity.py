"""The endpoint's identity: an Ed25519 key pair made on the endpoint at install time.

The private key never leaves the endpoint: it is written once, readable by its owner
only, and used to sign the site's challenge. The appliance stores the public key (the
installer registers it) and the client id, which is derived from the public key so
that it needs no file of its own.

The signed data names its purpose, the site and the client, so that a signature can
serve no other exchange, no other site and no other client:

    b"bastion jump client hello v1\\0" + site + b"\\0" + client_id + b"\\0" + nonce
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastion.agents.errors import IdentityError
from bastion.platform.files import create_once

HELLO_CONTEXT = b"bastion jump client hello v1\0"
REGISTRATION_CONTEXT = b"bastion jump client registration v1\0"


def client_id_for(public_key: bytes) -> str:
    """The client id of the endpoint holding `public_key` (32 raw bytes)."""
    digest = hashlib.sha256(b"bastion client id\0" + public_key).digest()
    return "jc_" + base64.b32encode(digest[:15]).decode("ascii").lower()


@dataclass(frozen=True)
class EndpointIdentity:
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        """The raw public key the appliance stores for this endpoint."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def client_id(self) -> str:
        return client_id_for(self.public_key)

    def sign_hello(self, site: str, nonce: bytes) -> bytes:
        return self.private_key.sign(hello_payload(site, self.client_id, nonce))

    def sign_registration(self, site: str, token: str) -> bytes:
        """Proof that this endpoint holds its key, sent with a registration."""
        return self.private_key.sign(registration_payload(site, token))

    def __repr__(self) -> str:
        return f"EndpointIdentity(client_id={self.client_id!r})"


def hello_payload(site: str, client_id: str, nonce: bytes) -> bytes:
    """The bytes a hello signature covers."""
    return HELLO_CONTEXT + site.encode() + b"\0" + client_id.encode() + b"\0" + nonce


def verify_hello(
    public_key: bytes, site: str, client_id: str, nonce: bytes, signature: bytes
) -> bool:
    """Did the holder of `public_key` sign this site's `nonce` for `client_id`?"""
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
        key.verify(signature, hello_payload(site, client_id, nonce))
    except (InvalidSignature, ValueError):
        return False
    return True


def registration_payload(site: str, token: str) -> bytes:
    return REGISTRATION_CONTEXT + site.encode() + b"\0" + token.encode()


def verify_registration(public_key: bytes, site: str, token: str, signature: bytes) -> bool:
    """Did the holder of `public_key` sign this registration (this site, this token)?"""
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
        key.verify(signature, registration_payload(site, token))
    except (InvalidSignature, ValueError):
        return False
    return True


def load_or_create(path: Path) -> EndpointIdentity:
    """The identity in `path`, made there (mode 0600) if the endpoint has none yet.

    The file is written through a fsynced temporary file and linked into place, so it
    is whole or absent, and never replaced: two installers racing keep the first key.
    """
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        create_once(path, pem, mode=0o600)
    return load(path)


def load(path: Path) -> EndpointIdentity:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise IdentityError(
            f"Cannot read the Jump Client key {path}: {error}. Reinstall the Jump Client "
            "from the site so that it gets a new identity."
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(
            f"{path} holds a {type(key).__name__}, not an Ed25519 key; reinstall the Jump Client."
        )
    return EndpointIdentity(key)


def from_seed(seed: bytes) -> EndpointIdentity:
    """An identity derived from 32 bytes (for fleet simulations, which need no key files)."""
    return EndpointIdentity(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))
