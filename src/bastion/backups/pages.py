"""`/login > Management > Software`: download a backup of the site, or restore one."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from bastion.accounts.deps import AccountsDep, AdministratorDep, CsrfDep, csrf_protect, page_actor
from bastion.accounts.sign_in import CurrentSession
from bastion.backups import schedule as backup_schedule
from bastion.backups import service as backups
from bastion.backups.api import BackupSiteDep, SealerDep, write_to_temp
from bastion.backups.container import read_header_from
from bastion.backups.rules import BackupError
from bastion.platform.errors import InvalidInputError, ServiceError
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.deps import UowDep
from bastion.platform.web.forms import reloads_go_to
from bastion.platform.web.routing import Router
from bastion.platform.web.templating import render, render_form
from bastion.platform.web.uploads import check_declared_length

router = Router(include_in_schema=False)
SOFTWARE = "/login/management/software"


def _page(
    request: Request,
    uow: UnitOfWork,
    current: CurrentSession | None,
    error: ServiceError | None = None,
    notice: str | None = None,
) -> Response:
    return render_form(
        request,
        "software.html",
        current,
        error,
        notice=notice,
        schedule=backup_schedule.get(uow),
        last_run=backup_schedule.last_run(uow),
    )


@router.get(SOFTWARE)
def software(request: Request, uow: UowDep, current: AdministratorDep) -> Response:
    return _page(request, uow, current)


@router.post(f"{SOFTWARE}/schedule", dependencies=[CsrfDep])
def set_schedule(
    request: Request,
    sealer: SealerDep,
    uow: UowDep,
    current: AdministratorDep,
    interval_hours: Annotated[int, Form()],
    directory: Annotated[str, Form()],
    keep: Annotated[int, Form()],
    passphrase: Annotated[str, Form()] = "",
    confirm_passphrase: Annotated[str, Form()] = "",
) -> Response:
    try:
        backups.check_new_passphrase(passphrase, confirm_passphrase)
        chosen = (interval_hours, directory.strip(), keep)
        actor = page_actor(request, current)
        backup_schedule.set_schedule(uow, actor, sealer, chosen, passphrase)
    except ServiceError as error:
        return _page(request, uow, current, error)
    uow.commit()
    return _page(request, uow, current, notice="Scheduled backups are set.")


@router.post(f"{SOFTWARE}/schedule/clear", dependencies=[CsrfDep])
def clear_schedule(request: Request, uow: UowDep, current: AdministratorDep) -> Response:
    backup_schedule.clear(uow, page_actor(request, current))
    uow.commit()
    return _page(request, uow, current, notice="Scheduled backups are off.")


@router.post(f"{SOFTWARE}/backup", dependencies=[CsrfDep])
async def download_backup(
    request: Request,
    site: BackupSiteDep,
    uow: UowDep,
    current: AdministratorDep,
    passphrase: Annotated[str, Form()] = "",
    confirm_passphrase: Annotated[str, Form()] = "",
) -> Response:
    try:
        backups.check_new_passphrase(passphrase, confirm_passphrase)
        actor = page_actor(request, current)
        return await run_in_threadpool(write_to_temp, site, passphrase, uow, actor)
    except ServiceError as error:
        return await run_in_threadpool(_page, request, uow, current, error)


@router.post(f"{SOFTWARE}/restore")
async def restore_backup(
    request: Request,
    site: BackupSiteDep,
    accounts: AccountsDep,
    uow: UowDep,
    current: AdministratorDep,
) -> Response:
    """The declared size is checked before the form is read, so a huge upload never lands."""
    try:
        check_declared_length(request, site.upload_limit_bytes)
        await csrf_protect(request, accounts, uow)
        form = await request.form()
        upload, passphrase = form.get("backup"), str(form.get("passphrase") or "")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise InvalidInputError("Choose the backup file to upload.")
        _check_header(upload)
        actor = page_actor(request, current)
        report = await run_in_threadpool(backups.restore, site, actor, upload.file, passphrase)
    except ServiceError as error:
        return await run_in_threadpool(_page, request, uow, current, error)
    return render(request, "restored.html", None, report=report)


def _check_header(upload: UploadFile) -> None:
    try:
        read_header_from(upload.file)
    except BackupError as error:
        raise InvalidInputError(f"{error} Nothing was changed.") from None
    upload.file.seek(0)


# Addresses that only take a form: opened again (a reload, a bookmark), they lead to its page.
reloads_go_to(
    router,
    SOFTWARE,
    f"{SOFTWARE}/schedule",
    f"{SOFTWARE}/schedule/clear",
    f"{SOFTWARE}/backup",
    f"{SOFTWARE}/restore",
)
