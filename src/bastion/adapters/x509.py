"""The certificate store's X.509 work: parse, describe, create, import, export, keep keys sealed.

Everything here turns ``cryptography`` objects and errors into the plain
:class:`~bastion.domain.certificates.CertificateInfo` and the
:class:`~bastion.domain.certificates.CertificateError` family.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import secrets
import ssl
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from bastion.domain.certificates import CertificateError, CertificateInfo, KeyType

MAX_CHAIN_LENGTH = 8
_PKCS12_KEY_TYPES = (
    rsa.RSAPrivateKey,
    dsa.DSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


class NotACertificateError(CertificateError):
    """The data is not a certificate (or not a PKCS#12 file)."""


class NotAPrivateKeyError(CertificateError):
    """The data is not a private key."""


class CertificatePassphraseError(CertificateError):
    """A passphrase is missing or wrong for a PKCS#12 file or an encrypted key."""


class KeyMismatchError(CertificateError):
    """The private key does not belong to the certificate."""


class UnprotectedKeyError(CertificateError):
    """A private key would leave the appliance without a passphrase."""


class UnsupportedKeyError(CertificateError):
    """The key type cannot be used for the site certificate."""


class KeyVaultError(CertificateError):
    """A sealed private key cannot be opened."""


@dataclass(frozen=True)
class CertificateBundle:
    """A certificate with, optionally, its private key and its chain (intermediates first)."""

    certificate: x509.Certificate
    private_key: PrivateKeyTypes | None = None
    chain: tuple[x509.Certificate, ...] = ()


# -- parsing -------------------------------------------------------------------


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in PEM data (in order), or the one DER certificate."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise NotACertificateError(
            "This is not a certificate. Upload a PEM (-----BEGIN CERTIFICATE-----) or"
            " DER certificate file, or a PKCS#12 file with its passphrase."
        ) from exc


def load_certificate(data: bytes) -> x509.Certificate:
    return load_certificates(data)[0]


def load_private_key(data: bytes, passphrase: str | None = None) -> PrivateKeyTypes:
    """A PEM or DER private key, encrypted or not."""
    password = passphrase.encode("utf-8") if passphrase else None
    loader = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        return loader(data, password)
    except TypeError as exc:
        raise CertificatePassphraseError(
            "The private key is protected by a passphrase: enter it to import the key."
            if password is None
            else "The private key is not encrypted: leave the key passphrase empty."
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        if password is not None and (b"ENCRYPTED" in data or b"-----BEGIN" not in data):
            raise CertificatePassphraseError(
                "The passphrase for the private key is wrong; enter the one it was saved with."
            ) from exc
        raise NotAPrivateKeyError("This is not a private key in PEM or DER form.") from exc


def load_system_trust_roots() -> list[x509.Certificate]:
    """The operating system's trusted root certificates (empty when none are installed)."""
    cafile = ssl.get_default_verify_paths().cafile
    if not cafile or not os.path.exists(cafile):
        return []
    with warnings.catch_warnings():
        # A few long-trusted roots break RFC 5280 details (e.g. a negative serial number).
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_pem_x509_certificates(Path(cafile).read_bytes())


# -- describing ----------------------------------------------------------------


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def key_type_and_size(public_key: PublicKeyTypes) -> tuple[KeyType, int]:
    if isinstance(public_key, rsa.RSAPublicKey):
        return KeyType.RSA, public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return KeyType.EC, public_key.curve.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeyType.ED25519, 256
    if isinstance(public_key, ed448.Ed448PublicKey):
        return KeyType.ED448, 456
    return KeyType.OTHER, 0


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches(cert: x509.Certificate, private_key: PrivateKeyTypes) -> bool:
    return _spki(private_key.public_key()) == _spki(cert.public_key())


def san_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return (*san.get_values_for_type(x509.DNSName), *ips)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def chain_complete(
    cert: x509.Certificate, chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> bool:
    """Whether issuer links lead from ``cert`` to a self-signed or trusted certificate."""
    pool = [*chain, *roots]
    root_prints = {fingerprint(root) for root in roots}
    current = cert
    for _ in range(MAX_CHAIN_LENGTH + 1):
        if fingerprint(current) in root_prints or _issued_by(current, current):
            return True
        candidates = (c for c in pool if c.subject == current.issuer and c != current)
        issuer = next((c for c in candidates if _issued_by(current, c)), None)
        if issuer is None:
            return False
        current = issuer
    return False


def chain_trusted(
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime,
) -> bool:
    """Whether ``cert`` verifies up to one of ``roots``; ``at`` is clamped into its validity,
    so that expiry is reported once, as expiry."""
    if not roots:
        return False
    moment = min(max(at, cert.not_valid_before_utc), cert.not_valid_after_utc)
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(moment)
        .max_chain_depth(MAX_CHAIN_LENGTH)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(cert, list(chain))
    except VerificationError:
        return False
    return True


def describe(
    bundle: CertificateBundle,
    *,
    trust_roots: Sequence[x509.Certificate] = (),
    now: datetime | None = None,
) -> CertificateInfo:
    """The plain description the certificate rules work on."""
    cert, key = bundle.certificate, bundle.private_key
    key_type, key_size = key_type_and_size(cert.public_key())
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        san_names=san_names(cert),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_size=key_size,
        fingerprint=fingerprint(cert),
        has_private_key=key is not None,
        key_matches=key is not None and key_matches(cert, key),
        chain_complete=chain_complete(cert, bundle.chain, trust_roots),
        chain_trusted=chain_trusted(cert, bundle.chain, trust_roots, now or datetime.now(UTC)),
    )


def parse_certificate(
    data: bytes,
    *,
    trust_roots: Sequence[x509.Certificate] = (),
    now: datetime | None = None,
) -> CertificateInfo:
    """Describe PEM or DER data: the first certificate, the others taken as its chain."""
    certs = load_certificates(data)
    return describe(make_bundle(certs[0], None, certs[1:]), trust_roots=trust_roots, now=now)


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


def _subject(names: Sequence[str]) -> x509.Name:
    if not names:
        raise CertificateError("Give at least one host name for the certificate.")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])


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
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
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
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )


# -- importing -----------------------------------------------------------------


def _looks_like_pkcs12(data: bytes) -> bool:
    """A DER SEQUENCE whose first element is INTEGER 3 (the PFX version)."""
    if len(data) < 8 or data[0] != 0x30:
        return False
    offset = 2 if data[1] < 0x80 else 2 + (data[1] & 0x7F)
    return data[offset : offset + 3] == b"\x02\x01\x03"


def make_bundle(
    cert: x509.Certificate, key: PrivateKeyTypes | None, chain: Iterable[x509.Certificate]
) -> CertificateBundle:
    """A bundle whose key (if any) is checked against the certificate."""
    if key is not None and not key_matches(cert, key):
        raise KeyMismatchError(
            f"The private key does not belong to certificate {cert.subject.rfc4514_string()}"
            f" (SHA-256 {fingerprint(cert)[:16]}...). Import the key created with its request."
        )
    return CertificateBundle(cert, key, tuple(c for c in chain if c != cert))


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


# -- private keys at rest ------------------------------------------------------


class KeyVault:
    """Seals private-key PEM with AES-256-GCM under a master key kept in a 0600 file.

    A sealed record is ``b"BKV1" + 12-byte nonce + ciphertext``; the certificate
    fingerprint is the associated data, so a record only opens for its certificate.
    """

    _VERSION = b"BKV1"

    def __init__(self, master_key: bytes):
        if len(master_key) != 32:
            raise KeyVaultError("The certificate master key must be 32 bytes.")
        self._aead = AESGCM(master_key)

    def __repr__(self) -> str:
        return "KeyVault(<master key hidden>)"

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> KeyVault:
        """The vault whose master key is in ``path`` (created, never replaced, if asked)."""
        if create and not path.exists():
            _create_master_key(path)
        try:
            if path.stat().st_mode & 0o077:
                raise KeyVaultError(
                    f"{path} can be read by other users; run 'chmod 600 {path}' and retry."
                )
            return cls(path.read_bytes())
        except FileNotFoundError as exc:
            raise KeyVaultError(
                f"The certificate master key {path} is missing; restore it from a backup."
            ) from exc

    @staticmethod
    def _aad(fingerprint: str) -> bytes:
        return b"bastion-keyvault/1\0" + fingerprint.encode("ascii")

    def seal(self, key_pem: bytes, fingerprint: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return self._VERSION + nonce + self._aead.encrypt(nonce, key_pem, self._aad(fingerprint))

    def unseal(self, record: bytes, fingerprint: str) -> bytes:
        if record[:4] != self._VERSION or len(record) < 4 + 12 + 16:
            raise KeyVaultError("The stored private key record is not valid.")
        try:
            return self._aead.decrypt(record[4:16], record[16:], self._aad(fingerprint))
        except InvalidTag as exc:
            raise KeyVaultError(
                f"The stored private key for certificate {fingerprint[:16]} cannot be opened:"
                " it belongs to another certificate, or the master key was changed."
            ) from exc

    def seal_key(self, key: PrivateKeyTypes, fingerprint: str) -> bytes:
        return self.seal(_key_pem(key, None), fingerprint)

    def unseal_key(self, record: bytes, fingerprint: str) -> PrivateKeyTypes:
        return load_private_key(self.unseal(record, fingerprint))


def _create_master_key(path: Path) -> None:
    """Write a new random master key (0600, fsynced); never overwrite an existing one."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink()
