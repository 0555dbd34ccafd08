"""`/login/jump/jumpoints`: the vault's credentials and the SSH Jump Items reached through
Jumpoints, for administrators. A secret is typed into a form and never shown again."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from bastion.accounts.deps import AdministratorDep, CsrfDep, page_actor
from bastion.accounts.sign_in import CurrentSession
from bastion.jump_clients.api import SetupDep
from bastion.jump_clients.service import JumpClientsSetup
from bastion.jumpoints import rules, service
from bastion.jumpoints.api import VaultDep
from bastion.platform.errors import InvalidInputError, ServiceError
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.deps import UowDep
from bastion.platform.web.forms import FormText, redirect, reloads_go_to
from bastion.platform.web.schemas import RowId
from bastion.platform.web.templating import render_form

router = APIRouter(include_in_schema=False)
PAGE = "/login/jump/jumpoints"
CREDENTIALS = f"{PAGE}/credentials"
ITEMS = f"{PAGE}/ssh-items"


def _page(
    request: Request,
    setup: JumpClientsSetup,
    uow: UnitOfWork,
    current: CurrentSession,
    error: ServiceError | None = None,
    **form: Any,
) -> Response:
    return render_form(
        request,
        "jumpoints.html",
        current,
        error,
        credentials=service.list_credentials(uow),
        items=service.list_items(uow, setup),
        jumpoints=service.jumpoints(uow, setup),
        limits=rules,
        form=form,
    )


@router.get(PAGE)
def jumpoints_page(
    request: Request, setup: SetupDep, uow: UowDep, current: AdministratorDep
) -> Response:
    return _page(request, setup, uow, current)


@router.post(CREDENTIALS, dependencies=[CsrfDep])
def add_credential(
    request: Request,
    setup: SetupDep,
    vault: VaultDep,
    uow: UowDep,
    current: AdministratorDep,
    name: FormText = "",
    kind: FormText = "password",
    secret: FormText = "",
) -> Response:
    """Store a credential; the form comes back without the secret if it is refused."""
    try:
        service.add_credential(uow, vault, page_actor(request, current), name, kind, secret)
    except ServiceError as error:
        return _page(request, setup, uow, current, error, name=name, kind=kind)
    uow.commit()
    return redirect(PAGE)


@router.post(f"{CREDENTIALS}/{{row_id:int}}/delete", dependencies=[CsrfDep])
def delete_credential(
    request: Request, row_id: RowId, setup: SetupDep, uow: UowDep, current: AdministratorDep
) -> Response:
    try:
        service.delete_credential(uow, page_actor(request, current), row_id)
    except ServiceError as error:
        return _page(request, setup, uow, current, error)
    uow.commit()
    return redirect(PAGE)


def _number(what: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidInputError(f"{what} {text[:20]!r} is not a number.") from None


@router.post(ITEMS, dependencies=[CsrfDep])
def add_item(
    request: Request,
    setup: SetupDep,
    uow: UowDep,
    current: AdministratorDep,
    name: FormText = "",
    jumpoint_id: FormText = "",
    host: FormText = "",
    port: FormText = "22",
    username: FormText = "",
    credential_id: FormText = "",
    host_key: FormText = "",
    jump_group: FormText = "",
    tag: FormText = "",
) -> Response:
    form = {"name": name, "host": host, "port": port, "username": username}
    form |= {"host_key": host_key, "jump_group": jump_group, "tag": tag}
    try:
        wanted = service.SshItemRequest(
            name=name,
            jumpoint_id=_number("The Jumpoint", jumpoint_id),
            host=host,
            port=_number("The port", port),
            username=username,
            credential_id=_number("The credential", credential_id),
            host_key=host_key,
            jump_group=jump_group,
            tag=tag,
        )
        service.add_item(uow, setup, page_actor(request, current), wanted)
    except ServiceError as error:
        return _page(request, setup, uow, current, error, **form)
    uow.commit()
    return redirect(PAGE)


@router.post(f"{ITEMS}/{{row_id:int}}/delete", dependencies=[CsrfDep])
def delete_item(
    request: Request, row_id: RowId, setup: SetupDep, uow: UowDep, current: AdministratorDep
) -> Response:
    try:
        service.delete_item(uow, page_actor(request, current), row_id)
    except ServiceError as error:
        return _page(request, setup, uow, current, error)
    uow.commit()
    return redirect(PAGE)


reloads_go_to(
    router,
    PAGE,
    CREDENTIALS,
    ITEMS,
    f"{CREDENTIALS}/{{row_id:int}}/delete",
    f"{ITEMS}/{{row_id:int}}/delete",
)
