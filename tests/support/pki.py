"""A small test certificate authority: site certificates, PKCS#12 files, signed requests."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def fingerprint(self) -> str:
        return self.certificate.fingerprint(hashes.SHA256()).hex()

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


class TestCa:
    """A root CA that signs server certificates for the tests."""

    __test__ = False

    def __init__(self, name: str = "Bastion test root CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC) - timedelta(days=1)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), False)
            .sign(self.key, hashes.SHA256())
        )

    def pem(self) -> bytes:
        return self.certificate.public_bytes(PEM)

    def sign(
        self,
        public_key: ec.EllipticCurvePublicKey,
        names: list[str],
        *,
        days: int = 90,
        start: datetime | None = None,
    ) -> x509.Certificate:
        begin = start or datetime.now(UTC) - timedelta(hours=1)
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        return (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(begin)
            .not_valid_after(begin + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, names: list[str], *, days: int = 90, start: datetime | None = None) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        return Issued(self.sign(key.public_key(), names, days=days, start=start), key)

    def sign_request(self, csr_pem: bytes, names: list[str]) -> x509.Certificate:
        request = x509.load_pem_x509_csr(csr_pem)
        public_key = request.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        return self.sign(public_key, names)

    def pkcs12(self, issued: Issued, passphrase: str) -> bytes:
        return pkcs12.serialize_key_and_certificates(
            b"site",
            issued.key,
            issued.certificate,
            [self.certificate],
            serialization.BestAvailableEncryption(passphrase.encode()),
        )


def served_fingerprint(host: str, port: int, server_name: str) -> str:
    """SHA-256 of the certificate a new TLS connection is given (not verified)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()
