"""The appliance's own Ed25519 update key: signs its download keys (R24).

Created at first use in ``<data>/state/update-key`` (mode 0600). The file is
written under a temporary name and linked into place, so two processes that
create it at the same time end up sharing one complete key.
"""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.platform.files import create_once


class ApplianceKeyError(Exception):
    """The key file exists but is not an Ed25519 private key."""


def ensure_appliance_key(path: Path) -> Path:
    """The key file, created (0600) if there is none yet."""
    if path.exists():
        return path
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    create_once(path, pem)
    return path


def load(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ApplianceKeyError(f"{path} is not an Ed25519 private key")
    return key


def public_key_of(path: Path) -> str:
    """The public key as `bastion release enroll-appliance --public-key` takes it (base64url)."""
    raw = (
        load(path)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
