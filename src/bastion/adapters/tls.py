"""TLS for every listener: the internal certificate authority, and serving the default certificate.

All listeners share one :class:`ssl.SSLContext`. Serving another certificate loads it
into that same context, so new connections get it at once and open ones are left alone.
``load_cert_chain`` reads files, so the served chain and key are written to
``certs/active/``; the key only ever encrypted, under a password derived from the
key vault's master key.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.adapters.key_vault import KeyVault
from bastion.adapters.x509 import CertificateBundle, load_private_key
from bastion.files import write_atomically

MASTER_KEY_FILE = "master.key"
_SERVING_INFO = b"bastion/served-site-key/1"
_PLAIN_KEY_FILES = ("site.key", "internal-ca.key")
_reload_lock = threading.Lock()


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


# -- the internal certificate authority ----------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bastion appliance"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def _internal_ca(
    hostname: str, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"Bastion internal CA for {hostname}")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca, ca_key


def create_site_certificate(
    certs_dir: Path, hostname: str, extra_names: list[str]
) -> CertificateBundle:
    """A fresh internal CA (ten years) and a site certificate for `hostname` (two years).

    Only the CA certificate is written (to ``internal-ca.pem``, for clients to trust);
    its key signs the site certificate and is then dropped, so it cannot leak.
    The caller stores the returned bundle, whose key is sealed by the vault.
    """
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca, ca_key = _internal_ca(hostname, now)
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(dict.fromkeys([hostname, *extra_names]))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostname))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=730))
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    write_atomically(paths(certs_dir).ca_cert, ca.public_bytes(serialization.Encoding.PEM))
    return CertificateBundle(cert, key, (ca,))


def legacy_site_certificate(certs_dir: Path) -> CertificateBundle | None:
    """The site certificate an older release left in plain files, to move into the store."""
    cert_file, key_file = certs_dir / "site.pem", certs_dir / "site.key"
    if not (cert_file.exists() and key_file.exists()):
        return None
    certs = x509.load_pem_x509_certificates(cert_file.read_bytes())
    return CertificateBundle(certs[0], load_private_key(key_file.read_bytes()), tuple(certs[1:]))


def remove_plain_keys(certs_dir: Path) -> None:
    """Delete private keys an older release kept unencrypted (they are in the store now)."""
    for name in _PLAIN_KEY_FILES:
        (certs_dir / name).unlink(missing_ok=True)
    (certs_dir / "site.pem").unlink(missing_ok=True)


# -- serving -------------------------------------------------------------------


def _serving_password(certs_dir: Path) -> bytes:
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
    write_atomically(paths(certs_dir).served, _served_file(bundle, _serving_password(certs_dir)))


def serve(context: ssl.SSLContext, certs_dir: Path, bundle: CertificateBundle) -> None:
    """Serve ``bundle`` on ``context`` from now on: new connections get it, no restart.

    The file is tried on a scratch context first: a bundle that cannot load
    leaves both the served file and the shared context as they were.
    """
    password = _serving_password(certs_dir)
    served = paths(certs_dir).served
    staging = served.with_name(f".staging-{secrets.token_hex(4)}.pem")
    with _reload_lock:
        write_atomically(staging, _served_file(bundle, password))
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(staging, password=password)
            os.replace(staging, served)
        finally:
            staging.unlink(missing_ok=True)
        context.load_cert_chain(served, password=password)


def server_context(certs_dir: Path) -> ssl.SSLContext:
    """One TLS context shared by every listener, serving what ``certs/active/`` holds."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(paths(certs_dir).served, password=_serving_password(certs_dir))
    return context
