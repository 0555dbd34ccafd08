"""TLS for agents: trust the site's anchors and nothing else.

An agent is installed with the certificates that may sign its site's certificate (the
trust anchors). Its TLS context is built from those alone (no system roots), checks the
host name, and speaks TLS 1.2 or later.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from bastion.agents.errors import TrustError
from bastion.releases.packages import PackageError
from bastion.releases.packages import anchor_fingerprints as fingerprints_of


def anchors_context(anchors_pem: Path) -> ssl.SSLContext:
    """A client context that trusts only the certificates in `anchors_pem`."""
    return anchors_context_of(_read(anchors_pem))


def anchors_context_of(pem: bytes) -> ssl.SSLContext:
    """A client context that trusts only the certificates in `pem`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cadata=pem.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError) as error:
        raise TrustError(
            f"Cannot load the trust anchors: {error}. Reinstall the Jump Client from the "
            "site; its installer carries the anchors."
        ) from None
    return context


def anchor_fingerprints(anchors_pem: Path) -> tuple[str, ...]:
    """SHA-256 fingerprints of the anchors, reported to the site in `hello`.

    The site uses them before installing a release built with other anchors: it can
    count the clients that would no longer trust it.
    """
    return anchor_fingerprints_of(_read(anchors_pem))


def anchor_fingerprints_of(pem: bytes) -> tuple[str, ...]:
    try:
        return fingerprints_of(pem)
    except PackageError as error:
        raise TrustError(
            f"Cannot read the trust anchors: {error}. Reinstall the Jump Client from the "
            "site; its installer carries the anchors."
        ) from None


def _read(anchors_pem: Path) -> bytes:
    try:
        return anchors_pem.read_bytes()
    except OSError as error:
        raise TrustError(
            f"Cannot read the trust anchors {anchors_pem}: {error}. Reinstall the Jump Client "
            "from the site; its installer carries the anchors."
        ) from None
