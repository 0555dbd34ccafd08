"""The internal certificate authority that signs a new appliance's first site certificate."""

from __future__ import annotations

import ipaddress
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.certificates.tls import paths
from bastion.certificates.x509 import CertificateBundle, load_private_key
from bastion.platform.files import write_atomically

_PLAIN_KEY_FILES = ("site.key", "internal-ca.key")


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
    # Each appliance's CA has its own name: clients that trust two appliances of one site
    # (while it moves) must not take one CA for the other.
    ca_name = _name(f"Bastion internal CA for {hostname} ({secrets.token_hex(4)})")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
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
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
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
