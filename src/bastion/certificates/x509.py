"""The certificate store's X.509 reading: parse, describe, check chains.

Everything here turns ``cryptography`` objects and errors into the plain
:class:`~bastion.certificates.rules.CertificateInfo` and the
:class:`~bastion.certificates.rules.CertificateError` family. Creating,
importing and exporting certificates is in :mod:`bastion.certificates.formats`;
sealing private keys at rest in :mod:`bastion.certificates.key_vault`.
"""

from __future__ import annotations

import os
import ssl
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from bastion.certificates.rules import CertificateError, CertificateInfo, KeyType

MAX_CHAIN_LENGTH = 8


class NotACertificateError(CertificateError):
    """The data is not a certificate (or not a PKCS#12 file)."""


class NotAPrivateKeyError(CertificateError):
    """The data is not a private key."""


class CertificatePassphraseError(CertificateError):
    """A passphrase is missing or wrong for a PKCS#12 file or an encrypted key."""


class KeyMismatchError(CertificateError):
    """The private key does not belong to the certificate."""


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


def load_private_key(
    data: bytes, passphrase: str | None = None, *, checked: bool = False
) -> PrivateKeyTypes:
    """A PEM or DER private key, encrypted or not.

    `checked`: the key was checked when it entered the store and comes back sealed
    (AES-GCM, so unaltered); an RSA key's costly consistency check (half a second for
    3072 bits on a busy machine, at every list of the store) is then skipped.
    """
    password = passphrase.encode("utf-8") if passphrase else None
    loader = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        return loader(data, password, unsafe_skip_rsa_key_validation=checked)
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
    internal_ca: x509.Certificate | None = None,
) -> CertificateInfo:
    """The plain description the certificate rules work on.

    ``internal_ca`` is this appliance's own CA: a certificate it issued counts as trusted
    here (clients that trust the CA file trust it) and is described as issued by it.
    """
    cert, key = bundle.certificate, bundle.private_key
    key_type, key_size = key_type_and_size(cert.public_key())
    at = now or datetime.now(UTC)
    internal = [internal_ca] if internal_ca is not None else []
    by_internal_ca = bool(internal) and chain_trusted(cert, bundle.chain, internal, at)
    roots = [*trust_roots, *internal]
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
        chain_complete=chain_complete(cert, bundle.chain, roots),
        chain_trusted=by_internal_ca or chain_trusted(cert, bundle.chain, roots, at),
        issued_by_internal_ca=by_internal_ca,
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


# -- bundles -------------------------------------------------------------------


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
