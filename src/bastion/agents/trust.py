"""TLS for agents: trust the site's anchors and nothing else.

An agent is installed with the certificates that may sign its site's certificate (the
trust anchors). Its TLS context is built from those alone (no system roots), checks the
host name, and speaks TLS 1.2 or later.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from bastion.agents.errors import TrustError


def anchors_context(anchors_pem: Path) -> ssl.SSLContext:
    """A client context that trusts only the certificates in `anchors_pem`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=str(anchors_pem))
    except (OSError, ssl.SSLError) as error:
        raise TrustError(
            f"Cannot load the trust anchors {anchors_pem}: {error}. Reinstall the Jump Client "
            "from the site; its installer carries the anchors."
        ) from None
    return context


def anchor_fingerprints(anchors_pem: Path) -> tuple[str, ...]:
    """SHA-256 fingerprints of the anchors, reported to the site in `hello`.

    The site uses them before serving a certificate from another authority: it can
    count the clients that would no longer trust it.
    """
    certificates = x509.load_pem_x509_certificates(anchors_pem.read_bytes())
    return tuple(cert.fingerprint(hashes.SHA256()).hex() for cert in certificates)[:16]
