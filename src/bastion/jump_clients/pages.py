"""`/login > Jump`: Jump Client Installer, the Jump Clients list (with its settings), one
client's page (edit, revoke, delete), and clients installed twice on one machine."""

from __future__ import annotations

from math import ceil
from typing import Annotated, Any

from fastapi import Form, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.datastructures import FormData

from bastion.accounts.deps import AdministratorDep, CsrfDep, page_actor
from bastion.accounts.sign_in import CurrentSession
from bastion.jump_clients import fleet, rules, service, upgrades
from bastion.jump_clients.api import SetupDep
from bastion.jump_clients.repository import ClientFilter
from bastion.jump_clients.service import JumpClientsSetup
from bastion.platform.errors import InvalidInputError, ServiceError
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.deps import RuntimeDep, UowDep
from bastion.platform.web.forms import FormText, redirect, reloads_go_to
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import RowId
from bastion.platform.web.templating import render, render_form

router = Router(include_in_schema=False)
INSTALLER = "/login/jump/installer"
CLIENTS = "/login/jump/jump-clients"
PAGE_SIZE = 50
FILTERS = ("name", "hostname", "tag", "group", "mode", "status", "version")


# -- Jump Client Installer -------------------------------------------------------------


def _installer_page(
    request: Request,
    setup: JumpClientsSetup,
    uow: UnitOfWork,
    current: CurrentSession,
    error: ServiceError | None = None,
    **form: Any,
) -> Response:
    return render_form(
        request,
        "jump_installer.html",
        current,
        error,
        installers=service.list_installers(uow, setup),
        site_version=setup.site_version,
        versions=service.installer_versions(uow, setup),
        limits=rules,
        form=form,
    )


@router.get(INSTALLER)
def installer_page(
    request: Request, setup: SetupDep, uow: UowDep, current: AdministratorDep
) -> Response:
    return _installer_page(request, setup, uow, current)


@router.post(INSTALLER, dependencies=[CsrfDep])
def make_installer(
    request: Request,
    setup: SetupDep,
    uow: UowDep,
    current: AdministratorDep,
    mode: FormText = "active",
    kind: FormText = "jump_client",
    jump_group: FormText = "",
    tag: FormText = "",
    comments: FormText = "",
    valid_minutes: FormText = str(rules.DEFAULT_VALIDITY_MINUTES),
    site_version: FormText = "",
) -> Response:
    """The installer file downloads at once; its token is never shown again."""
    form = {
        "mode": mode,
        "kind": kind,
        "jump_group": jump_group,
        "tag": tag,
        "comments": comments,
        "site_version": site_version,
    }
    try:
        wanted = service.InstallerRequest(**form, valid_minutes=_minutes(valid_minutes))
        made = service.make_installer(uow, setup, page_actor(request, current), wanted)
    except ServiceError as error:
        return _installer_page(request, setup, uow, current, error, **form)
    uow.commit()
    disposition = f'attachment; filename="{made.filename}"'
    headers = {"Content-Disposition": disposition, "Cache-Control": "no-store"}
    return Response(made.file, media_type="application/json", headers=headers)


@router.get(f"{INSTALLER}/builds/{{version}}")
def installer_build(
    request: Request,
    version: Annotated[str, Path(max_length=64)],
    runtime: RuntimeDep,
    setup: SetupDep,
    uow: UowDep,
    current: AdministratorDep,
) -> Response:
    """The `bastion` wheel of a site version, for endpoints and consoles (R11)."""
    try:
        found = service.installer_build(uow, setup, runtime.settings.data_dir, version)
    except ServiceError as error:
        return _installer_page(request, setup, uow, current, error)
    return FileResponse(
        found.path,
        media_type="application/octet-stream",
        filename=f"bastion-{found.version}-py3-none-any.whl",
        headers={"Cache-Control": "no-store"},
    )


def _minutes(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidInputError(f"{text!r} is not a number of minutes.") from None


@router.post(f"{INSTALLER}/{{installer_id:int}}/revoke", dependencies=[CsrfDep])
def revoke_installer(
    request: Request, installer_id: RowId, setup: SetupDep, uow: UowDep, current: AdministratorDep
) -> Response:
    try:
        service.revoke_installer(uow, setup, page_actor(request, current), installer_id)
    except ServiceError as error:
        return _installer_page(request, setup, uow, current, error)
    uow.commit()
    return redirect(INSTALLER)


# -- Jump Clients ----------------------------------------------------------------------


def _list_page(
    request: Request,
    setup: JumpClientsSetup,
    uow: UnitOfWork,
    current: CurrentSession,
    error: ServiceError | None = None,
    notice: str | None = None,
) -> Response:
    shown = {k: (request.query_params.get(k) or "").strip() for k in FILTERS}
    page_number = max(1, min(_page_number(request), 1_000_000))
    given = {k: v or None for k, v in shown.items()}
    wanted = ClientFilter(
        name=given["name"],
        hostname=given["hostname"],
        tag=given["tag"],
        jump_group=given["group"],
        mode=given["mode"],
        version=given["version"],
        status=given["status"],
    )
    listed = service.list_clients(uow, setup, wanted, PAGE_SIZE, (page_number - 1) * PAGE_SIZE)
    return render_form(
        request,
        "jump_clients.html",
        current,
        error,
        notice=notice,
        listed=listed,
        shown=shown,
        page=page_number,
        pages=max(1, ceil(listed.total / PAGE_SIZE)),
        statuses=[s.value for s in rules.Status],
        fleet=service.settings(uow),
        limits=rules.LIMITS,
        progress=upgrades.progress(uow, setup.site_version),
    )


def _page_number(request: Request) -> int:
    text = request.query_params.get("page", "1")
    return int(text) if text.isdigit() and len(text) < 8 else 1


@router.get(CLIENTS)
def clients_page(
    request: Request, setup: SetupDep, uow: UowDep, current: AdministratorDep
) -> Response:
    return _list_page(request, setup, uow, current)


@router.post(f"{CLIENTS}/settings", dependencies=[CsrfDep])
async def set_settings(
    request: Request, setup: SetupDep, uow: UowDep, current: AdministratorDep
) -> Response:
    form = await request.form()
    return await run_in_threadpool(_save_settings, request, setup, uow, current, form)


def _save_settings(
    request: Request,
    setup: JumpClientsSetup,
    uow: UnitOfWork,
    current: CurrentSession,
    form: FormData,
) -> Response:
    try:
        values = {k: _number(str(form.get(k, "")), k) for k in rules.LIMITS}
        service.set_settings(uow, page_actor(request, current), rules.FleetSettings(**values))
    except ServiceError as error:
        return _list_page(request, setup, uow, current, error)
    uow.commit()
    return _list_page(request, setup, uow, current, notice="The Jump Client settings are saved.")


def _number(text: str, field: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        what = rules.LIMITS[field][2]
        raise InvalidInputError(f"{what}: {text!r} is not a whole number.") from None


@router.post(f"{CLIENTS}/rollout/resume", dependencies=[CsrfDep])
def resume_rollout(
    request: Request,
    setup: SetupDep,
    uow: UowDep,
    current: AdministratorDep,
    retry_failed: Annotated[str | None, Form()] = None,
) -> Response:
    actor = page_actor(request, current)
    upgrades.resume(uow, actor, setup.site_version, retry_failed is not None)
    uow.commit()
    return _list_page(request, setup, uow, current, notice="The Jump Client rollout goes on.")


@router.get(f"{CLIENTS}/duplicates")
def duplicates_page(
    request: Request, setup: SetupDep, uow: UowDep, current: AdministratorDep
) -> Response:
    groups = service.duplicates(uow, setup)
    return render(request, "jump_duplicates.html", current, groups=groups)


def _client_page(
    request: Request,
    setup: JumpClientsSetup,
    uow: UnitOfWork,
    current: CurrentSession,
    row_id: RowId,
    error: ServiceError | None = None,
) -> Response:
    client = service.get_client(uow, setup, row_id)
    return render_form(request, "jump_client.html", current, error, client=client)


@router.get(f"{CLIENTS}/{{row_id:int}}")
def client_page(
    request: Request, row_id: RowId, setup: SetupDep, uow: UowDep, current: AdministratorDep
) -> Response:
    return _client_page(request, setup, uow, current, row_id)


@router.post(f"{CLIENTS}/{{row_id:int}}", dependencies=[CsrfDep])
def edit_client(
    request: Request,
    row_id: RowId,
    setup: SetupDep,
    uow: UowDep,
    current: AdministratorDep,
    name: Annotated[str, Form()],
    jump_group: FormText = "",
    tag: FormText = "",
    comments: FormText = "",
) -> Response:
    edit = service.ClientEdit(name, jump_group, tag, comments)
    try:
        service.edit_client(uow, setup, page_actor(request, current), row_id, edit)
    except ServiceError as error:
        uow.session.rollback()
        return _client_page(request, setup, uow, current, row_id, error)
    uow.commit()
    return redirect(f"{CLIENTS}/{row_id}?saved=1")


@router.post(f"{CLIENTS}/{{row_id:int}}/revoke", dependencies=[CsrfDep])
async def revoke_client(
    request: Request, row_id: RowId, runtime: RuntimeDep, uow: UowDep, current: AdministratorDep
) -> Response:
    """As the API: refused from now on, and dropped at once if connected."""
    await fleet.revoke_client(runtime, uow, page_actor(request, current), row_id)
    return redirect(f"{CLIENTS}/{row_id}")


@router.post(f"{CLIENTS}/{{row_id:int}}/delete", dependencies=[CsrfDep])
async def delete_client(
    request: Request, row_id: RowId, runtime: RuntimeDep, uow: UowDep, current: AdministratorDep
) -> Response:
    """As the API: a connected client uninstalls itself at once."""
    await fleet.delete_client(runtime, uow, page_actor(request, current), row_id)
    return redirect(CLIENTS)


# Addresses that only take a form: opened again (a reload, a bookmark), they lead to its page.
reloads_go_to(router, INSTALLER, f"{INSTALLER}/{{installer_id:int}}/revoke")
reloads_go_to(
    router,
    CLIENTS,
    f"{CLIENTS}/settings",
    f"{CLIENTS}/rollout/resume",
    *(f"{CLIENTS}/{{row_id:int}}/{action}" for action in ("revoke", "delete")),
)
