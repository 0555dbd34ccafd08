"""TLS for every listener: serving the default certificate.

All listeners share one :class:`ssl.SSLContext`. Serving another certificate loads it
into that same context, so new connections get it at once and open ones are left alone.
``load_cert_chain`` reads files, so the served chain and key are written to
``certs/active/``; the key only ever encrypted, under a password derived from the
key vault's master key.
"""

from __future__ import annotations

import os
import secrets
import ssl
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.certificates.key_vault import KeyVault
from bastion.certificates.x509 import CertificateBundle, load_certificates
from bastion.platform.files import write_atomically

MASTER_KEY_FILE = "master.key"
_SERVING_INFO = b"bastion/served-site-key/1"
_PLAIN_KEY_FILES = ("site.key", "internal-ca.key")
_reload_lock = threading.Lock()
_serving: weakref.WeakKeyDictionary[ssl.SSLContext, str] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class SiteCertificatePaths:
    ca_cert: Path
    """The internal CA that signed the first site certificate (public; clients may trust it)."""
    served: Path
    """The served chain (leaf first) and its private key, encrypted, in one PEM file."""
    master_key: Path


def paths(certs_dir: Path) -> SiteCertificatePaths:
    return SiteCertificatePaths(
        certs_dir / "internal-ca.pem",
        certs_dir / "active" / "site.pem",
        certs_dir / MASTER_KEY_FILE,
    )


def open_vault(certs_dir: Path) -> KeyVault:
    """The key vault sealing the store's private keys (its master key is made on first use)."""
    certs_dir.mkdir(parents=True, exist_ok=True)
    return KeyVault.open(paths(certs_dir).master_key, create=True)


# -- serving -------------------------------------------------------------------


def serving_password(certs_dir: Path) -> bytes:
    """The served key file's password: derived from the vault's master key, never stored."""
    open_vault(certs_dir)  # refuses a missing or readable master key
    master = paths(certs_dir).master_key.read_bytes()
    derived = HKDF(hashes.SHA256(), 32, salt=None, info=_SERVING_INFO).derive(master)
    return derived.hex().encode("ascii")


def _served_file(bundle: CertificateBundle, password: bytes) -> bytes:
    """The chain, leaf first, then the private key encrypted under ``password``."""
    if bundle.private_key is None:
        raise ValueError("a certificate without its private key cannot be served")
    pem = serialization.Encoding.PEM
    chain = b"".join(c.public_bytes(pem) for c in (bundle.certificate, *bundle.chain))
    key = bundle.private_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(password)
    )
    return chain + key


def write_served(certs_dir: Path, bundle: CertificateBundle) -> None:
    """Put ``bundle`` in ``certs/active/``, where the next start loads it from."""
    write_atomically(paths(certs_dir).served, _served_file(bundle, serving_password(certs_dir)))


def serve(context: ssl.SSLContext, certs_dir: Path, bundle: CertificateBundle) -> None:
    """Serve ``bundle`` on ``context`` from now on: new connections get it, no restart.

    The file is tried on a scratch context first: a bundle that cannot load
    leaves both the served file and the shared context as they were.
    """
    password = serving_password(certs_dir)
    served = paths(certs_dir).served
    staging = served.with_name(f".staging-{secrets.token_hex(4)}.pem")
    with _reload_lock:
        write_atomically(staging, _served_file(bundle, password))
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(staging, password=password)
            context.load_cert_chain(staging, password=password)
            _serving[context] = _fingerprint(bundle.certificate)
            os.replace(staging, served)
        finally:
            staging.unlink(missing_ok=True)


def server_context(certs_dir: Path) -> ssl.SSLContext:
    """One TLS context shared by every listener, serving what ``certs/active/`` holds."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_served(context, certs_dir)
    return context


def load_served(context: ssl.SSLContext, certs_dir: Path) -> None:
    """Serve on ``context`` what ``certs/active/`` holds now (written by another process).

    Loaded from a private copy of what was read, so that `serving` tells what is served
    even if the file is written again meanwhile (an install's new worker writes it)."""
    served = paths(certs_dir).served
    pem = served.read_bytes()
    copy = served.with_name(f".loading-{secrets.token_hex(4)}.pem")
    try:
        write_atomically(copy, pem)
        context.load_cert_chain(copy, password=serving_password(certs_dir))
    finally:
        copy.unlink(missing_ok=True)
    _serving[context] = _fingerprint(load_certificates(pem)[0])


def serving(context: ssl.SSLContext) -> str | None:
    """SHA-256 (hex) of the certificate `context` serves new connections, if it was
    loaded here (`server_context`, `serve`)."""
    return _serving.get(context)


def _fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()
