"""Making certificates and moving them in and out of the appliance.

Self-signed certificates and signing requests, PKCS#12 and PEM/DER import,
and PKCS#12 and PEM export of the selected parts of a
:class:`~bastion.certificates.x509.CertificateBundle`.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.certificates.rules import CertificateError
from bastion.certificates.x509 import (
    CertificateBundle,
    CertificatePassphraseError,
    NotACertificateError,
    load_certificates,
    load_private_key,
    make_bundle,
)

_PKCS12_KEY_TYPES = (
    rsa.RSAPrivateKey,
    dsa.DSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


class UnprotectedKeyError(CertificateError):
    """A private key would leave the appliance without a passphrase."""


class UnsupportedKeyError(CertificateError):
    """The key type cannot be used for the site certificate."""


# -- creating ------------------------------------------------------------------


class KeyKind(enum.StrEnum):
    RSA_3072 = "rsa-3072"
    EC_P256 = "ec-p256"


def generate_private_key(kind: KeyKind) -> CertificateIssuerPrivateKeyTypes:
    if kind is KeyKind.RSA_3072:
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return ec.generate_private_key(ec.SECP256R1())


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


MAX_COMMON_NAME_LENGTH = 64
"""X.509 allows no longer common name; longer host names live in the SAN extension only."""


def _subject(names: Sequence[str]) -> x509.Name:
    """The first name that fits as common name. Without one, the subject names the
    appliance instead (a subject may not be empty); clients read the host names from the
    subject alternative names anyway."""
    if not names:
        raise CertificateError("Give at least one host name for the certificate.")
    fitting = [n for n in names if len(n) <= MAX_COMMON_NAME_LENGTH]
    if not fitting:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bastion appliance")])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fitting[0])])


def _alternative_names(names: Sequence[str]) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName([_general_name(n) for n in names])


def create_self_signed(
    names: Sequence[str],
    *,
    key_kind: KeyKind = KeyKind.EC_P256,
    validity_days: int = 365,
    now: datetime | None = None,
) -> CertificateBundle:
    """A self-signed server certificate for ``names`` (DNS names or IP addresses)."""
    subject, key = _subject(names), generate_private_key(key_kind)
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_alternative_names(names), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    return CertificateBundle(builder.sign(key, hashes.SHA256()), key)


def create_csr(
    names: Sequence[str], key: CertificateIssuerPrivateKeyTypes
) -> x509.CertificateSigningRequest:
    """A certificate signing request for ``names``, to send to a certificate authority."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_subject(names))
        .add_extension(_alternative_names(names), False)
        .sign(key, hashes.SHA256())
    )


# -- importing -----------------------------------------------------------------


def _looks_like_pkcs12(data: bytes) -> bool:
    """A DER SEQUENCE whose first element is INTEGER 3 (the PFX version)."""
    if len(data) < 8 or data[0] != 0x30:
        return False
    offset = 2 if data[1] < 0x80 else 2 + (data[1] & 0x7F)
    return data[offset : offset + 3] == b"\x02\x01\x03"


def import_pkcs12(data: bytes, passphrase: str) -> CertificateBundle:
    """Certificate, key and chain from a PKCS#12 (.p12/.pfx) file."""
    try:
        loaded = pkcs12.load_pkcs12(data, passphrase.encode("utf-8") if passphrase else None)
    except (ValueError, UnsupportedAlgorithm) as exc:
        if _looks_like_pkcs12(data):
            raise CertificatePassphraseError(
                "The passphrase is wrong for this PKCS#12 file (or the file is damaged)."
                " Enter the passphrase it was exported with."
            ) from exc
        raise NotACertificateError("This is not a PKCS#12 (.p12 or .pfx) file.") from exc
    certs = [extra.certificate for extra in loaded.additional_certs]
    if loaded.cert is not None:
        certs.insert(0, loaded.cert.certificate)
    if not certs:
        raise NotACertificateError("The PKCS#12 file holds no certificate, only keys.")
    certs = _leaf_first(certs) if loaded.cert is None else certs
    return make_bundle(certs[0], loaded.key, certs[1:])


def _leaf_first(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """Without a key to mark it, the leaf is the certificate that issued none of the others."""
    issuers = {c.issuer for c in certs if c.issuer != c.subject}
    leaves = [c for c in certs if c.subject not in issuers]
    return leaves[:1] + [c for c in certs if c not in leaves[:1]]


def import_pem(
    certificate: bytes,
    private_key: bytes | None = None,
    *,
    key_passphrase: str | None = None,
    chain: bytes = b"",
) -> CertificateBundle:
    """A PEM or DER certificate (the first of a PEM file; others are chain), key and chain."""
    certs = load_certificates(certificate) + (load_certificates(chain) if chain.strip() else [])
    if private_key is None and b"PRIVATE KEY-----" in certificate:
        private_key = certificate
    key = None if private_key is None else load_private_key(private_key, key_passphrase)
    return make_bundle(certs[0], key, certs[1:])


# -- exporting -----------------------------------------------------------------


class ExportFormat(enum.StrEnum):
    PKCS12 = "pkcs12"
    PEM = "pem"


@dataclass(frozen=True)
class ExportSelection:
    certificate: bool = True
    private_key: bool = False
    chain: bool = False


def _check_export(
    bundle: CertificateBundle, selection: ExportSelection, passphrase: str | None, allow: bool
) -> None:
    if not (selection.certificate or selection.private_key or selection.chain):
        raise CertificateError("Choose what to export: certificate, private key or chain.")
    if selection.private_key and bundle.private_key is None:
        raise CertificateError("This certificate has no private key on the appliance.")
    if selection.private_key and not passphrase and not allow:
        raise UnprotectedKeyError(
            "Exporting a private key needs a passphrase to protect it. Enter one, or"
            " confirm explicitly that the key may be exported unprotected."
        )


def _pkcs12_encryption(passphrase: str | None) -> serialization.KeySerializationEncryption:
    if not passphrase:
        return serialization.NoEncryption()
    return (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(100_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase.encode("utf-8"))
    )


def export_pkcs12(
    bundle: CertificateBundle,
    selection: ExportSelection,
    passphrase: str | None,
    *,
    allow_unprotected_key: bool = False,
    friendly_name: str | None = None,
) -> bytes:
    """A PKCS#12 file (AES-256, PBES2) holding the selected parts of ``bundle``."""
    _check_export(bundle, selection, passphrase, allow_unprotected_key)
    key = bundle.private_key if selection.private_key else None
    if key is not None and not isinstance(key, _PKCS12_KEY_TYPES):
        raise UnsupportedKeyError("This key type cannot be stored in a PKCS#12 file; use PEM.")
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8") if friendly_name else None,
        key,
        bundle.certificate if selection.certificate else None,
        list(bundle.chain) if selection.chain and bundle.chain else None,
        _pkcs12_encryption(passphrase),
    )


def _key_pem(key: PrivateKeyTypes, passphrase: str | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def export_pem(
    bundle: CertificateBundle,
    selection: ExportSelection,
    passphrase: str | None,
    *,
    allow_unprotected_key: bool = False,
) -> bytes:
    """PEM text: certificate, then chain, then the key (encrypted under ``passphrase``)."""
    _check_export(bundle, selection, passphrase, allow_unprotected_key)
    certs = [bundle.certificate] if selection.certificate else []
    certs += list(bundle.chain) if selection.chain else []
    parts = [c.public_bytes(serialization.Encoding.PEM) for c in certs]
    if selection.private_key and bundle.private_key is not None:
        parts.append(_key_pem(bundle.private_key, passphrase))
    return b"".join(parts)


def export_bundle(
    bundle: CertificateBundle,
    selection: ExportSelection,
    export_format: ExportFormat,
    passphrase: str | None,
    *,
    allow_unprotected_key: bool = False,
) -> bytes:
    export = export_pkcs12 if export_format is ExportFormat.PKCS12 else export_pem
    return export(bundle, selection, passphrase, allow_unprotected_key=allow_unprotected_key)
