"""The certificate store: list, create, request, import, export, choose the default, delete.

Private keys are sealed by a :class:`KeySealer` (the key vault) before they reach the
database. Nothing here serves TLS: after a commit that changed the default
certificate, the caller asks the TLS adapter to serve :func:`default_bundle`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509 as cx509

from bastion.certificates import formats, key_vault, records, rules, x509
from bastion.certificates.models import CertificateRow
from bastion.certificates.records import KeySealer
from bastion.certificates.repository import CertificateRepository
from bastion.certificates.rules import CertificateError, CertificateWarning
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork

MAX_NAMES = 100
MAX_UPLOAD_BYTES = 1024 * 1024
"""A certificate, key or PKCS#12 file larger than this is not one."""
MAX_VALIDITY_DAYS = 3650
AUDIT_TARGET_LENGTH = 200
CONTENT_TYPES = {
    formats.ExportFormat.PKCS12: "application/x-pkcs12",
    formats.ExportFormat.PEM: "application/x-pem-file",
}


@dataclass(frozen=True)
class StoreContext:
    """What judging a certificate needs: the site it serves, the trusted roots, the time, and
    this appliance's internal CA (whose certificates count as trusted for it)."""

    site_hostname: str
    trust_roots: Sequence[cx509.Certificate] = ()
    now: datetime | None = None
    internal_ca: cx509.Certificate | None = None

    def describe(self, bundle: x509.CertificateBundle, now: datetime) -> rules.CertificateInfo:
        return x509.describe(
            bundle, trust_roots=self.trust_roots, now=now, internal_ca=self.internal_ca
        )


@dataclass(frozen=True)
class CertificateView:
    id: int
    fingerprint: str
    subject: str
    names: tuple[str, ...]
    issuer: str
    not_before: datetime | None
    not_after: datetime | None
    key_type: str
    key_size: int
    has_private_key: bool
    pending_request: bool
    is_default: bool
    source: str
    created_at: datetime
    request_pem: str | None
    warnings: tuple[CertificateWarning, ...]
    issued_by_internal_ca: bool = False
    """Clients trust it once they trust this appliance's internal CA certificate."""


@dataclass(frozen=True)
class ExportedFile:
    filename: str
    content_type: str
    data: bytes


@contextmanager
def _translated() -> Iterator[None]:
    """Certificate errors become service errors, with the same message."""
    try:
        yield
    except rules.CertificateInUseError as error:
        raise ConflictError(str(error)) from error
    except key_vault.KeyVaultError as error:
        raise UnavailableError(str(error)) from error
    except CertificateError as error:
        raise InvalidInputError(str(error)) from error


# -- reading -------------------------------------------------------------------


def _judged(
    row: CertificateRow, sealer: KeySealer, context: StoreContext
) -> tuple[tuple[CertificateWarning, ...], bool]:
    """The certificate's warnings, and whether this appliance's internal CA issued it."""
    if row.pending_request:
        return (), False
    now = context.now or utc_now()
    info = context.describe(records.bundle_of(row, sealer), now)
    found = rules.certificate_warnings(info, now=now, site_hostname=context.site_hostname)
    return tuple(found), info.issued_by_internal_ca


def _view(row: CertificateRow, sealer: KeySealer, context: StoreContext) -> CertificateView:
    warnings, by_internal_ca = _judged(row, sealer, context)
    return CertificateView(
        id=row.id,
        fingerprint=row.fingerprint,
        subject=row.subject,
        names=tuple(json.loads(row.names)),
        issuer=row.issuer,
        not_before=row.not_before,
        not_after=row.not_after,
        key_type=row.key_type,
        key_size=row.key_size,
        has_private_key=row.private_key is not None,
        pending_request=row.pending_request,
        is_default=row.is_default,
        source=row.source,
        created_at=row.created_at,
        request_pem=row.request_pem,
        warnings=warnings,
        issued_by_internal_ca=by_internal_ca,
    )


def _audit(
    uow: UnitOfWork, actor: Actor, action: str, row: CertificateRow, **details: object
) -> None:
    target = row.subject[:AUDIT_TARGET_LENGTH]
    audit.record(uow, actor, action, target, fingerprint=row.fingerprint, **details)


def _row(uow: UnitOfWork, certificate_id: int) -> CertificateRow:
    row = uow.repository(CertificateRepository).get(certificate_id)
    if row is None:
        raise NotFoundError(f"There is no certificate with id {certificate_id} in the store.")
    return row


def list_certificates(
    uow: UnitOfWork, sealer: KeySealer, context: StoreContext
) -> list[CertificateView]:
    with _translated():
        return [_view(row, sealer, context) for row in uow.repository(CertificateRepository).all()]


def get_certificate(
    uow: UnitOfWork, sealer: KeySealer, context: StoreContext, certificate_id: int
) -> CertificateView:
    with _translated():
        return _view(_row(uow, certificate_id), sealer, context)


def default_bundle(uow: UnitOfWork, sealer: KeySealer) -> x509.CertificateBundle | None:
    """The certificate, key and chain the site serves; None while the store has no default."""
    row = uow.repository(CertificateRepository).default()
    if row is None:
        return None
    with _translated():
        return records.bundle_of(row, sealer)


def default_chain(uow: UnitOfWork) -> list[cx509.Certificate]:
    """The certificate the site serves and its chain, leaf first; no key is unsealed."""
    row = uow.repository(CertificateRepository).default()
    if row is None or row.certificate_pem is None:
        return []
    return cx509.load_pem_x509_certificates((row.certificate_pem + row.chain_pem).encode())


# -- adding --------------------------------------------------------------------


def _add(
    uow: UnitOfWork,
    sealer: KeySealer,
    actor: Actor,
    bundle: x509.CertificateBundle,
    source: str,
    context: StoreContext,
) -> CertificateView:
    fingerprint = x509.fingerprint(bundle.certificate)
    if uow.repository(CertificateRepository).by_fingerprint(fingerprint) is not None:
        raise ConflictError(
            f"Certificate {fingerprint[:16]}... is already in the store; nothing was imported."
        )
    if bundle.private_key is None:
        completed = _complete_request(uow, sealer, actor, bundle, context)
        if completed is not None:
            return completed
    row = uow.repository(CertificateRepository).add(records.certificate_row(bundle, sealer, source))
    _audit(uow, actor, "certificate.add", row, via=source)
    return _view(row, sealer, context)


def add_default(
    uow: UnitOfWork,
    sealer: KeySealer,
    actor: Actor,
    bundle: x509.CertificateBundle,
    source: str,
) -> None:
    """Store ``bundle`` as the default certificate (the first start's site certificate)."""
    with _translated():
        row = uow.repository(CertificateRepository).add(
            records.certificate_row(bundle, sealer, source)
        )
        uow.repository(CertificateRepository).make_default(row)
        _audit(uow, actor, "certificate.default", row)


def _names(names: Sequence[str]) -> list[str]:
    """Each name checked and written as the certificate holds it (see `rules.host_name`)."""
    given = [n for n in names if n.strip()]
    if not given or len(given) > MAX_NAMES:
        raise InvalidInputError(f"Give 1 to {MAX_NAMES} host names or IP addresses.")
    return list(dict.fromkeys(rules.host_name(n) for n in given))


def _key_kind(text: str) -> formats.KeyKind:
    try:
        return formats.KeyKind(text)
    except ValueError:
        kinds = ", ".join(k.value for k in formats.KeyKind)
        raise InvalidInputError(f"Unknown key type {text!r}; choose one of {kinds}.") from None


def create_self_signed(
    uow: UnitOfWork,
    sealer: KeySealer,
    actor: Actor,
    context: StoreContext,
    names: Sequence[str],
    key_kind: str = formats.KeyKind.EC_P256.value,
    validity_days: int = 365,
) -> CertificateView:
    if not 1 <= validity_days <= MAX_VALIDITY_DAYS:
        raise InvalidInputError(f"Choose a validity of 1 to {MAX_VALIDITY_DAYS} days.")
    with _translated():
        bundle = formats.create_self_signed(
            _names(names), key_kind=_key_kind(key_kind), validity_days=validity_days
        )
        return _add(uow, sealer, actor, bundle, "self-signed", context)


def create_request(
    uow: UnitOfWork,
    sealer: KeySealer,
    actor: Actor,
    context: StoreContext,
    names: Sequence[str],
    key_kind: str = formats.KeyKind.EC_P256.value,
) -> CertificateView:
    """A new key (kept sealed) and a CSR to send to a CA; importing its answer completes it."""
    with _translated():
        cleaned = _names(names)
        key = formats.generate_private_key(_key_kind(key_kind))
        request = formats.create_csr(cleaned, key)
        row = uow.repository(CertificateRepository).add(records.request_row(request, key, sealer))
        _audit(uow, actor, "certificate.request", row, names=cleaned)
        return _view(row, sealer, context)


def _complete_request(
    uow: UnitOfWork,
    sealer: KeySealer,
    actor: Actor,
    bundle: x509.CertificateBundle,
    context: StoreContext,
) -> CertificateView | None:
    """The pending request whose key the signed certificate carries, completed by it."""
    for row in uow.repository(CertificateRepository).pending_requests():
        key = records.request_key(row, sealer)
        if x509.key_matches(bundle.certificate, key):
            signed = x509.make_bundle(bundle.certificate, key, bundle.chain)
            records.fill(row, records.certificate_row(signed, sealer, row.source))
            uow.session.flush()
            _audit(uow, actor, "certificate.complete", row)
            return _view(row, sealer, context)
    return None


def import_pkcs12(
    uow: UnitOfWork,
    sealer: KeySealer,
    actor: Actor,
    context: StoreContext,
    data: bytes,
    passphrase: str,
) -> CertificateView:
    with _translated():
        bundle = formats.import_pkcs12(data, passphrase)
        return _add(uow, sealer, actor, bundle, "pkcs12", context)


def import_pem(
    uow: UnitOfWork,
    sealer: KeySealer,
    actor: Actor,
    context: StoreContext,
    certificate: bytes,
    private_key: bytes | None = None,
    key_passphrase: str | None = None,
    chain: bytes = b"",
) -> CertificateView:
    with _translated():
        bundle = formats.import_pem(
            certificate, private_key or None, key_passphrase=key_passphrase or None, chain=chain
        )
        return _add(uow, sealer, actor, bundle, "pem", context)


# -- using ---------------------------------------------------------------------


def export(
    uow: UnitOfWork,
    sealer: KeySealer,
    actor: Actor,
    certificate_id: int,
    selection: formats.ExportSelection,
    export_format: str,
    passphrase: str | None,
    allow_unprotected_key: bool = False,
) -> ExportedFile:
    """The selected parts as a file; a key leaves unprotected only when explicitly allowed."""
    try:
        kind = formats.ExportFormat(export_format)
    except ValueError:
        raise InvalidInputError("Choose the export format: pkcs12 or pem.") from None
    row = _row(uow, certificate_id)
    with _translated():
        bundle = records.bundle_of(row, sealer)
        data = formats.export_bundle(
            bundle, selection, kind, passphrase, allow_unprotected_key=allow_unprotected_key
        )
    parts = [p for p in ("certificate", "private_key", "chain") if getattr(selection, p)]
    _audit(
        uow,
        actor,
        "certificate.export",
        row,
        parts=parts,
        format=kind.value,
        protected=bool(passphrase),
    )
    suffix = "p12" if kind is formats.ExportFormat.PKCS12 else "pem"
    return ExportedFile(f"certificate-{row.fingerprint[:16]}.{suffix}", CONTENT_TYPES[kind], data)


def set_default(
    uow: UnitOfWork,
    sealer: KeySealer,
    actor: Actor,
    context: StoreContext,
    certificate_id: int,
    accept_expired: bool = False,
) -> CertificateView:
    """Make the certificate the site's default; the caller serves it after committing."""
    row = _row(uow, certificate_id)
    now = context.now or utc_now()
    with _translated():
        info = context.describe(records.bundle_of(row, sealer), now)
        choice = rules.choose_default(
            info, now=now, site_hostname=context.site_hostname, accept_expired=accept_expired
        )
    uow.repository(CertificateRepository).make_default(row)
    kinds = sorted(w.kind.value for w in choice.warnings)
    _audit(uow, actor, "certificate.default", row, warnings=kinds)
    return _view(row, sealer, context)


def delete(uow: UnitOfWork, actor: Actor, certificate_id: int) -> None:
    row = _row(uow, certificate_id)
    with _translated():
        rules.check_deletable(
            row.fingerprint, ["the default certificate"] if row.is_default else []
        )
    uow.repository(CertificateRepository).delete(row)
    _audit(uow, actor, "certificate.delete", row)
