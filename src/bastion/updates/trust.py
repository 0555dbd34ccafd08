"""What the update client trusts: the update service's CA (for TLS) and the vendor's root
(for TUF). Reads and checks them; builds the TLS context the client connects with.

The TLS context trusts exactly the update service's CA when one is set. Without one it
trusts what the operating system trusts, plus the private CAs of
BASTION_TRUST_ANCHORS_FILE, which the appliance already trusts for its certificate store.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from tuf.api.exceptions import RepositoryError, UnsignedMetadataError
from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]


class TrustError(ValueError):
    """A CA or a trusted root cannot be used; the message says why and what to give."""


@dataclass(frozen=True)
class CaCertificate:
    """One certificate of the update service's CA bundle, as an administrator checks it."""

    subject: str
    sha256: str
    expires: datetime


@dataclass(frozen=True)
class RootSummary:
    """The vendor's trusted root (a TUF root.json), as an administrator checks it."""

    version: int
    threshold: int
    keys: int
    expires: datetime
    sha256: str


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.subject.rfc4514_string()


def ca_certificates(pem: bytes) -> list[CaCertificate]:
    """The certificates of a PEM bundle; a TrustError unless there is at least one and
    OpenSSL accepts them all as trust anchors."""
    try:
        found = x509.load_pem_x509_certificates(pem)
        ssl.create_default_context(cadata=pem.decode("ascii"))
    except (ValueError, UnicodeDecodeError, ssl.SSLError) as error:
        raise TrustError(
            f"The update service CA is not a PEM certificate ({error}): give the CA "
            "certificate(s) that issued the update service's TLS certificate, in PEM "
            "(-----BEGIN CERTIFICATE-----)."
        ) from None
    return [
        CaCertificate(
            _common_name(c),
            c.fingerprint(hashes.SHA256()).hex(),
            c.not_valid_after_utc,
        )
        for c in found
    ]


def service_tls(ca_pem: bytes | None, anchors_file: Path | None) -> ssl.SSLContext:
    """The client TLS context for the update service (see the module's docstring)."""
    if ca_pem is not None:
        context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    else:
        context = ssl.create_default_context()
        if anchors_file is not None:
            context.load_verify_locations(cafile=str(anchors_file))
    return context


def root_summary(data: bytes) -> RootSummary:
    """Check that `data` is a TUF root signed by its own keys; what an administrator sees."""
    try:
        _check_type(data)
        root = Metadata[Root].from_bytes(data)
        root.signed.verify_delegate(Root.type, root.signed_bytes, root.signatures)
    except UnsignedMetadataError as error:
        raise TrustError(
            f"The trusted root is not signed by the keys it names ({error}): give the "
            "root.json the vendor shipped with this site, unchanged."
        ) from None
    except (RepositoryError, ValueError, TypeError, KeyError) as error:
        raise TrustError(
            f"The trusted root is not a TUF root.json ({error}): give the root.json the "
            "vendor shipped with this site."
        ) from None
    role = root.signed.roles[Root.type]
    return RootSummary(
        root.signed.version,
        role.threshold,
        len(role.keyids),
        root.signed.expires,
        hashlib.sha256(data).hexdigest(),
    )


def _check_type(data: bytes) -> None:
    """ValueError naming what `data` is, unless it is signed root metadata."""
    try:
        kind = json.loads(data)["signed"]["_type"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("it is not signed TUF metadata in JSON") from None
    if kind != Root.type:
        raise ValueError(f"it is {kind} metadata, not the root")


def read_file(path: Path, what: str, variable: str) -> bytes:
    """A file named by an environment setting; a TrustError that names the setting."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise TrustError(f"The {what} {path} cannot be read ({error}); check {variable}.") from None
