"""How the certificate store keeps a certificate or a pending request in one table row."""

from __future__ import annotations

import json
from typing import Protocol

from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from bastion.certificates import x509
from bastion.certificates.models import CertificateRow
from bastion.platform.clock import utc_now
from bastion.platform.errors import InvalidInputError

_PEM = serialization.Encoding.PEM
NAME_LENGTH = 1000
"""Subjects and issuers are kept to the column's length; the PEM keeps them whole."""


class KeySealer(Protocol):
    """Seals private keys at rest; implemented by ``bastion.certificates.key_vault.KeyVault``."""

    def seal_key(self, key: PrivateKeyTypes, fingerprint: str) -> bytes: ...

    def unseal_key(self, record: bytes, fingerprint: str) -> PrivateKeyTypes: ...


def _pem_certs(text: str | None) -> list[cx509.Certificate]:
    return cx509.load_pem_x509_certificates(text.encode("ascii")) if text else []


def bundle_of(row: CertificateRow, sealer: KeySealer) -> x509.CertificateBundle:
    """The certificate, its unsealed key (if any) and chain of a stored row."""
    if row.certificate_pem is None:
        raise InvalidInputError(
            "This request has no certificate yet: import the certificate your CA signed."
        )
    key = None if row.private_key is None else sealer.unseal_key(row.private_key, row.fingerprint)
    certificate = cx509.load_pem_x509_certificate(row.certificate_pem.encode("ascii"))
    return x509.CertificateBundle(certificate, key, tuple(_pem_certs(row.chain_pem)))


def certificate_row(
    bundle: x509.CertificateBundle, sealer: KeySealer, source: str
) -> CertificateRow:
    """A new row for ``bundle``, its key sealed under the certificate's fingerprint."""
    info = x509.describe(bundle)
    key = bundle.private_key
    return CertificateRow(
        fingerprint=info.fingerprint,
        subject=info.subject[:NAME_LENGTH],
        names=json.dumps(list(info.san_names)),
        issuer=info.issuer[:NAME_LENGTH],
        not_before=info.not_before,
        not_after=info.not_after,
        key_type=info.key_type.value,
        key_size=info.key_size,
        certificate_pem=bundle.certificate.public_bytes(_PEM).decode("ascii"),
        chain_pem="".join(c.public_bytes(_PEM).decode("ascii") for c in bundle.chain),
        request_pem=None,
        private_key=None if key is None else sealer.seal_key(key, info.fingerprint),
        pending_request=False,
        is_default=False,
        source=source,
        created_at=utc_now(),
    )


def _request_names(request: cx509.CertificateSigningRequest) -> list[str]:
    names = request.extensions.get_extension_for_class(cx509.SubjectAlternativeName).value
    ips = [str(ip) for ip in names.get_values_for_type(cx509.IPAddress)]
    return [*names.get_values_for_type(cx509.DNSName), *ips]


def request_row(
    request: cx509.CertificateSigningRequest, key: PrivateKeyTypes, sealer: KeySealer
) -> CertificateRow:
    """A pending request: identified by the SHA-256 of the CSR until its certificate comes."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(request.public_bytes(serialization.Encoding.DER))
    request_id = digest.finalize().hex()
    key_type, key_size = x509.key_type_and_size(request.public_key())
    return CertificateRow(
        fingerprint=request_id,
        subject=request.subject.rfc4514_string()[:NAME_LENGTH],
        names=json.dumps(_request_names(request)),
        issuer="",
        key_type=key_type.value,
        key_size=key_size,
        certificate_pem=None,
        chain_pem="",
        request_pem=request.public_bytes(_PEM).decode("ascii"),
        private_key=sealer.seal_key(key, request_id),
        pending_request=True,
        is_default=False,
        source="request",
        created_at=utc_now(),
    )


def request_key(row: CertificateRow, sealer: KeySealer) -> PrivateKeyTypes:
    if row.private_key is None:
        raise InvalidInputError(f"The request {row.subject} lost its private key; create it again.")
    return sealer.unseal_key(row.private_key, row.fingerprint)


_FILLED_COLUMNS = (
    "fingerprint",
    "subject",
    "names",
    "issuer",
    "not_before",
    "not_after",
    "certificate_pem",
    "chain_pem",
    "private_key",
    "pending_request",
)


def fill(row: CertificateRow, filled: CertificateRow) -> None:
    """Turn a pending request's row into the certificate's, keeping its id and creation time."""
    for column in _FILLED_COLUMNS:
        setattr(row, column, getattr(filled, column))
