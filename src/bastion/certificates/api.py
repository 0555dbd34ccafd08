"""The certificate store over the JSON API: the same services as the Certificates page."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from bastion.accounts.deps import ApiActorDep
from bastion.certificates import service as certificates
from bastion.certificates.formats import ExportSelection
from bastion.certificates.schemas import (
    CertificateExport,
    CertificateImport,
    CertificateOut,
    DefaultChoice,
    RequestCreate,
    SelfSignedCreate,
    WarningOut,
)
from bastion.certificates.service import MAX_UPLOAD_BYTES
from bastion.certificates.site import SiteCertificates
from bastion.platform.errors import InvalidInputError
from bastion.platform.web.deps import UowDep, part
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import RowId, errors

router = Router(prefix="/api/v1", tags=["certificates"])

NAMES = "a name is not a host name or an IP address (the message names it)."
IMPORTED = (
    "the data is not a certificate, key or PKCS#12 file, a passphrase is wrong, or the key "
    "does not belong to the certificate."
)
IN_STORE = "this certificate is in the store already."
EXPORT = "a private key is asked for without a passphrase or the explicit flag, or is missing."
DEFAULT = "the certificate has no matching private key, or has expired (unless accepted)."

_FILE = {"type": "string", "format": "binary"}
_TEXT = {"type": "string", "maxLength": 1024}
UPLOAD_FORM = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "pkcs12": _FILE,
                    "passphrase": _TEXT,
                    "certificate": _FILE,
                    "private_key": _FILE,
                    "key_passphrase": _TEXT,
                    "chain": _FILE,
                },
                "additionalProperties": False,
            }
        }
    },
}
"""Files as parts of a form: none may be null (a form has no null), each may be left out."""

SiteCertificatesDep = Annotated[SiteCertificates, Depends(part(SiteCertificates))]


def _out(view: certificates.CertificateView) -> CertificateOut:
    warnings = [WarningOut(kind=w.kind.value, message=w.message) for w in view.warnings]
    fields = {k: v for k, v in vars(view).items() if k not in ("names", "warnings")}
    return CertificateOut(**fields, names=list(view.names), warnings=warnings)


def _decoded(field: str, text: str | None) -> bytes:
    if not text:
        return b""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"{field} is not valid base64; encode the file's bytes.") from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInputError(f"{field} is larger than 1 MiB; check that it is the right file.")
    return data


@router.get("/certificates", response_model=list[CertificateOut], responses=errors(503))
def list_certificates(
    site: SiteCertificatesDep, uow: UowDep, actor: ApiActorDep
) -> list[CertificateOut]:
    listed = certificates.list_certificates(uow, site.vault, site.context())
    return [_out(view) for view in listed]


@router.get(
    "/certificates/{certificate_id:int}", response_model=CertificateOut, responses=errors(404, 503)
)
def get_certificate(
    certificate_id: RowId, site: SiteCertificatesDep, uow: UowDep, actor: ApiActorDep
) -> CertificateOut:
    context = site.context()
    return _out(certificates.get_certificate(uow, site.vault, context, certificate_id))


@router.post(
    "/certificates/self-signed",
    response_model=CertificateOut,
    status_code=201,
    responses=errors(400, e400=NAMES),
)
def create_self_signed(
    body: SelfSignedCreate, site: SiteCertificatesDep, uow: UowDep, actor: ApiActorDep
) -> CertificateOut:
    created = certificates.create_self_signed(
        uow,
        site.vault,
        actor,
        site.context(),
        body.names,
        body.key_kind,
        body.validity_days,
    )
    uow.commit()
    return _out(created)


@router.post(
    "/certificates/requests",
    response_model=CertificateOut,
    status_code=201,
    responses=errors(400, e400=NAMES),
)
def create_request(
    body: RequestCreate, site: SiteCertificatesDep, uow: UowDep, actor: ApiActorDep
) -> CertificateOut:
    """A key kept on the appliance and its CSR (``request_pem``), to send to a CA."""
    context = site.context()
    created = certificates.create_request(
        uow, site.vault, actor, context, body.names, body.key_kind
    )
    uow.commit()
    return _out(created)


def _import(
    site: SiteCertificatesDep, uow: UowDep, actor: ApiActorDep, body: CertificateImport
) -> certificates.CertificateView:
    vault, context = site.vault, site.context()
    if body.pkcs12:
        data = _decoded("pkcs12", body.pkcs12)
        return certificates.import_pkcs12(uow, vault, actor, context, data, body.passphrase)
    if not body.certificate:
        raise InvalidInputError("Send pkcs12 (with passphrase), or certificate (base64).")
    return certificates.import_pem(
        uow,
        vault,
        actor,
        context,
        _decoded("certificate", body.certificate),
        _decoded("private_key", body.private_key) or None,
        body.key_passphrase,
        _decoded("chain", body.chain),
    )


@router.post(
    "/certificates/import",
    response_model=CertificateOut,
    status_code=201,
    responses=errors(400, 409, e400=IMPORTED, e409=IN_STORE),
)
def import_certificate(
    body: CertificateImport, site: SiteCertificatesDep, uow: UowDep, actor: ApiActorDep
) -> CertificateOut:
    """Import from JSON; file contents are base64. A bare certificate completes its request."""
    imported = _import(site, uow, actor, body)
    uow.commit()
    return _out(imported)


FILE_FIELDS = ("pkcs12", "certificate", "private_key", "chain")
TEXT_FIELDS = ("passphrase", "key_passphrase")


async def _part(form: FormData, field: str) -> str | None:
    """A file part as base64; a plain part (PEM pasted as text) is taken as its text."""
    item = form.get(field)
    if item is None:
        return None
    data = await item.read(MAX_UPLOAD_BYTES + 1) if isinstance(item, UploadFile) else item.encode()
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInputError(f"The {field} file is larger than 1 MiB; check the file.")
    return base64.b64encode(data).decode("ascii")


async def _uploaded(form: FormData) -> CertificateImport:
    unknown = sorted(set(form.keys()) - {*FILE_FIELDS, *TEXT_FIELDS})
    if unknown:
        raise InvalidInputError(
            f"Unknown form field(s) {', '.join(unknown)}; send only "
            f"{', '.join((*FILE_FIELDS, *TEXT_FIELDS))}."
        )
    fields: dict[str, str | None] = {name: await _part(form, name) for name in FILE_FIELDS}
    for name in TEXT_FIELDS:
        value = form.get(name)
        fields[name] = value if isinstance(value, str) else None
    fields["passphrase"] = fields["passphrase"] or ""
    try:
        return CertificateImport.model_validate(fields)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None


@router.post(
    "/certificates/upload",
    response_model=CertificateOut,
    status_code=201,
    responses=errors(400, 409, e400=IMPORTED, e409=IN_STORE),
    openapi_extra={"requestBody": UPLOAD_FORM},
)
async def upload_certificate(
    request: Request, site: SiteCertificatesDep, uow: UowDep, actor: ApiActorDep
) -> CertificateOut:
    """Import from multipart form data: the same fields as ``/certificates/import``, the
    files as file parts (a PEM file may also come as a plain text part)."""
    body = await _uploaded(await request.form())
    return await run_in_threadpool(import_certificate, body, site, uow, actor)


@router.post(
    "/certificates/{certificate_id:int}/export",
    responses={
        200: {
            "description": "The file; never cached (no-store)",
            "content": {
                "application/x-pkcs12": {"schema": {"type": "string", "format": "binary"}},
                "application/x-pem-file": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **errors(400, 404, e400=EXPORT),
    },
)
def export_certificate(
    certificate_id: RowId,
    body: CertificateExport,
    uow: UowDep,
    site: SiteCertificatesDep,
    actor: ApiActorDep,
) -> Response:
    """The selected parts as a PKCS#12 or PEM file; keys need a passphrase or an explicit flag."""
    selection = ExportSelection(body.certificate, body.private_key, body.chain)
    exported = certificates.export(
        uow,
        site.vault,
        actor,
        certificate_id,
        selection,
        body.format,
        body.passphrase,
        body.allow_unprotected_key,
    )
    uow.commit()
    disposition = f'attachment; filename="{exported.filename}"'
    return Response(
        exported.data,
        media_type=exported.content_type,
        headers={"Content-Disposition": disposition},
    )


@router.put(
    "/certificates/{certificate_id:int}/default",
    response_model=CertificateOut,
    responses=errors(400, 404, e400=DEFAULT),
)
def set_default(
    certificate_id: RowId,
    body: DefaultChoice,
    site: SiteCertificatesDep,
    uow: UowDep,
    actor: ApiActorDep,
) -> CertificateOut:
    """Serve this certificate from now on (new connections); its remaining warnings are listed."""
    chosen = certificates.set_default(
        uow,
        site.vault,
        actor,
        site.context(),
        certificate_id,
        body.accept_expired,
    )
    uow.commit()
    site.serve_default()
    return _out(chosen)


@router.delete(
    "/certificates/{certificate_id:int}",
    status_code=204,
    responses=errors(404, 409, e409="the default certificate cannot be deleted."),
)
def delete_certificate(certificate_id: RowId, uow: UowDep, actor: ApiActorDep) -> None:
    certificates.delete(uow, actor, certificate_id)
    uow.commit()
