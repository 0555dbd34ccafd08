"""`/appliance > Security > Certificates`: the certificate store in the machine interface.

Each handler parses its form, calls one certificate service, commits, and then (when
the default changed) serves the new default on the shared TLS context.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from bastion.accounts.deps import AdministratorDep, CsrfDep, page_actor
from bastion.accounts.sign_in import CurrentSession
from bastion.certificates import service as certificates
from bastion.certificates.api import SiteCertificatesDep
from bastion.certificates.formats import ExportSelection, KeyKind
from bastion.certificates.service import MAX_UPLOAD_BYTES
from bastion.certificates.site import SiteCertificates
from bastion.platform.errors import InvalidInputError, NotFoundError, ServiceError
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.deps import UowDep
from bastion.platform.web.forms import FormText, redirect, reloads_go_to
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import RowId
from bastion.platform.web.templating import render_form

router = Router(include_in_schema=False)

CERTIFICATES = "/appliance/security/certificates"
MAX_REQUEST_BYTES = 4 * MAX_UPLOAD_BYTES
UPLOAD_FIELDS = ("pkcs12_file", "certificate_file", "private_key_file", "chain_file")
NOTICES = {
    "added": "The certificate was added to the store.",
    "requested": "The request was created: copy its CSR below and send it to your CA.",
    "imported": "The certificate was imported.",
    "default": "The default certificate changed; new connections get it now.",
    "deleted": "The certificate was deleted.",
}

FormFlag = Annotated[bool, Form()]


def _page(
    request: Request,
    site: SiteCertificates,
    uow: UnitOfWork,
    current: CurrentSession,
    error: ServiceError | None = None,
    **context: object,
) -> Response:
    listed = certificates.list_certificates(uow, site.vault, site.context())
    shown: dict[str, Any] = {
        "certificates": listed,
        "key_kinds": [kind.value for kind in KeyKind],
        "site_hostname": site.site_hostname,
        "internal_ca_file": site.internal_ca_file,
        "max_upload_mib": MAX_UPLOAD_BYTES // (1024 * 1024),
        **context,
    }
    return render_form(request, "certificates.html", current, error, **shown)


def _names(text: str) -> list[str]:
    return text.replace(",", " ").split()


@router.get(CERTIFICATES)
def certificate_list(
    request: Request, site: SiteCertificatesDep, uow: UowDep, current: AdministratorDep
) -> Response:
    notice = NOTICES.get(request.query_params.get("done", ""))
    return _page(request, site, uow, current, notice=notice)


@router.get(f"{CERTIFICATES}/internal-ca.pem")
def internal_ca_certificate(site: SiteCertificatesDep, current: AdministratorDep) -> Response:
    """The internal CA certificate (public), for administrators to install on clients."""
    try:
        pem = site.internal_ca_file.read_bytes()
    except OSError:
        raise NotFoundError(
            "This appliance has no internal CA certificate; it makes one at its first start."
        ) from None
    disposition = 'attachment; filename="internal-ca.pem"'
    return Response(
        pem, media_type="application/x-pem-file", headers={"Content-Disposition": disposition}
    )


@router.post(f"{CERTIFICATES}/self-signed", dependencies=[CsrfDep])
def create_self_signed(
    request: Request,
    site: SiteCertificatesDep,
    uow: UowDep,
    current: AdministratorDep,
    names: FormText = "",
    key_kind: FormText = KeyKind.EC_P256.value,
    validity_days: FormText = "365",
) -> Response:
    try:
        days = int(validity_days) if validity_days.strip().isdigit() else 0
        certificates.create_self_signed(
            uow,
            site.vault,
            page_actor(request, current),
            site.context(),
            _names(names),
            key_kind,
            days,
        )
    except ServiceError as error:
        return _page(request, site, uow, current, error, form={"names": names})
    uow.commit()
    return redirect(f"{CERTIFICATES}?done=added")


@router.post(f"{CERTIFICATES}/request", dependencies=[CsrfDep])
def create_request(
    request: Request,
    site: SiteCertificatesDep,
    uow: UowDep,
    current: AdministratorDep,
    names: FormText = "",
    key_kind: FormText = KeyKind.EC_P256.value,
) -> Response:
    try:
        certificates.create_request(
            uow,
            site.vault,
            page_actor(request, current),
            site.context(),
            _names(names),
            key_kind,
        )
    except ServiceError as error:
        return _page(request, site, uow, current, error, form={"request_names": names})
    uow.commit()
    return redirect(f"{CERTIFICATES}?done=requested")


def limit_upload(request: Request) -> None:
    """Refuse a body too large to hold the allowed files before it is read at all."""
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        raise InvalidInputError("Send the upload with its length (Content-Length).")
    if int(length) > MAX_REQUEST_BYTES:
        raise InvalidInputError(
            "The upload is too large: certificate, key and chain files are at most 1 MiB each."
        )


async def _upload(form: FormData, field: str) -> bytes:
    item = form.get(field)
    if not isinstance(item, UploadFile):
        return b""
    data = await item.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInputError(
            f"The file {item.filename or field!r} is larger than 1 MiB; a certificate, key or"
            " chain file is much smaller. Check that you chose the right file."
        )
    return data


def _import(
    site: SiteCertificates, uow: UnitOfWork, actor: Actor, form: FormData, files: dict[str, bytes]
) -> None:
    """Import and commit (on a worker thread: the database, and the key's sealing)."""
    store, context = site.vault, site.context()
    if files["pkcs12_file"]:
        passphrase = str(form.get("passphrase") or "")
        certificates.import_pkcs12(uow, store, actor, context, files["pkcs12_file"], passphrase)
    elif not files["certificate_file"]:
        raise InvalidInputError("Choose a PKCS#12 file, or a certificate file in PEM or DER form.")
    else:
        certificates.import_pem(
            uow,
            store,
            actor,
            context,
            files["certificate_file"],
            files["private_key_file"] or None,
            str(form.get("key_passphrase") or "") or None,
            files["chain_file"],
        )
    uow.commit()


@router.post(f"{CERTIFICATES}/import", dependencies=[Depends(limit_upload), CsrfDep])
async def import_certificate(
    request: Request, site: SiteCertificatesDep, uow: UowDep, current: AdministratorDep
) -> Response:
    """A PKCS#12 file with its passphrase, or PEM/DER certificate, key and chain files."""
    form = await request.form()
    try:
        files = {field: await _upload(form, field) for field in UPLOAD_FIELDS}
        await run_in_threadpool(_import, site, uow, page_actor(request, current), form, files)
    except ServiceError as error:
        return await run_in_threadpool(_page, request, site, uow, current, error)
    return redirect(f"{CERTIFICATES}?done=imported")


@router.post(f"{CERTIFICATES}/{{certificate_id:int}}/export", dependencies=[CsrfDep])
def export_certificate(
    request: Request,
    certificate_id: RowId,
    site: SiteCertificatesDep,
    uow: UowDep,
    current: AdministratorDep,
    export_format: FormText = "pkcs12",
    passphrase: FormText = "",
    include_certificate: FormFlag = False,
    include_private_key: FormFlag = False,
    include_chain: FormFlag = False,
    allow_unprotected_key: FormFlag = False,
) -> Response:
    selection = ExportSelection(include_certificate, include_private_key, include_chain)
    try:
        exported = certificates.export(
            uow,
            site.vault,
            page_actor(request, current),
            certificate_id,
            selection,
            export_format,
            passphrase or None,
            allow_unprotected_key,
        )
    except ServiceError as error:
        return _page(request, site, uow, current, error, export_id=certificate_id)
    uow.commit()
    disposition = f'attachment; filename="{exported.filename}"'
    return Response(
        exported.data,
        media_type=exported.content_type,
        headers={"Content-Disposition": disposition, "Cache-Control": "no-store"},
    )


@router.post(f"{CERTIFICATES}/{{certificate_id:int}}/default", dependencies=[CsrfDep])
def make_default(
    request: Request,
    certificate_id: RowId,
    site: SiteCertificatesDep,
    uow: UowDep,
    current: AdministratorDep,
    accept_expired: FormFlag = False,
) -> Response:
    try:
        certificates.set_default(
            uow,
            site.vault,
            page_actor(request, current),
            site.context(),
            certificate_id,
            accept_expired,
        )
    except ServiceError as error:
        return _page(request, site, uow, current, error, default_id=certificate_id)
    uow.commit()
    site.serve_default()
    return redirect(f"{CERTIFICATES}?done=default")


@router.post(f"{CERTIFICATES}/{{certificate_id:int}}/delete", dependencies=[CsrfDep])
def delete_certificate(
    request: Request,
    certificate_id: RowId,
    site: SiteCertificatesDep,
    uow: UowDep,
    current: AdministratorDep,
) -> Response:
    try:
        certificates.delete(uow, page_actor(request, current), certificate_id)
    except ServiceError as error:
        return _page(request, site, uow, current, error)
    uow.commit()
    return redirect(f"{CERTIFICATES}?done=deleted")


# Addresses that only take a form: opened again (a reload, a bookmark), they lead to its page.
reloads_go_to(
    router,
    CERTIFICATES,
    f"{CERTIFICATES}/self-signed",
    f"{CERTIFICATES}/request",
    f"{CERTIFICATES}/import",
    *(
        f"{CERTIFICATES}/{{certificate_id:int}}/{action}"
        for action in ("export", "default", "delete")
    ),
)
