"""`/login/jump/jumpoints`: the vault's credentials and the SSH Jump Items reached through
Jumpoints, for administrators. A secret is typed into a form and never shown again."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import Request, Response

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
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import RowId
from bastion.platform.web.templating import render_form

router = Router(include_in_schema=False)
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
    passphrase: FormText = "",
) -> Response:
    """Store a credential; the form comes back without the secret if it is refused."""
    try:
        actor = page_actor(request, current)
        service.add_credential(uow, vault, actor, name, kind, secret, passphrase)
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


ItemForm = dict[str, str]


def _item_request(form: ItemForm) -> service.SshItemRequest:
    """The item the form asks for: the same request the API's body makes."""
    return service.SshItemRequest(
        name=form["name"],
        jumpoint_id=_number("The Jumpoint", form["jumpoint_id"]),
        host=form["host"],
        port=_number("The port", form["port"]),
        username=form["username"],
        credential_id=_number("The credential", form["credential_id"]),
        host_key=form["host_key"],
        jump_group=form["jump_group"],
        tag=form["tag"],
        comments=form.get("comments", ""),
    )


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
    form = {"name": name, "jumpoint_id": jumpoint_id, "host": host, "port": port}
    form |= {"username": username, "credential_id": credential_id, "host_key": host_key}
    form |= {"jump_group": jump_group, "tag": tag}
    try:
        service.add_item(uow, setup, page_actor(request, current), _item_request(form))
    except ServiceError as error:
        return _page(request, setup, uow, current, error, **form)
    uow.commit()
    return redirect(PAGE)


def _item_page(
    request: Request,
    setup: JumpClientsSetup,
    uow: UnitOfWork,
    current: CurrentSession,
    row_id: int,
    error: ServiceError | None = None,
    form: ItemForm | None = None,
) -> Response:
    """An item's edit form: as stored, or as typed when the edit was refused. The
    credential is chosen by name; its secret is never on the page."""
    item = service.get_item(uow, setup, row_id)
    if form is None:
        form = {k: str(v) for k, v in asdict(item).items() if k in ITEM_FIELDS}
    saved = "saved" in request.query_params and error is None
    return render_form(
        request,
        "jumpoint_item.html",
        current,
        error,
        item=item,
        form=form,
        credentials=service.list_credentials(uow),
        jumpoints=service.jumpoints(uow, setup),
        limits=rules,
        notice=f"The SSH Jump Item {item.name} is saved." if saved else None,
    )


ITEM_FIELDS = (
    "name", "jumpoint_id", "host", "port", "username", "credential_id", "host_key",
    "jump_group", "tag", "comments",
)  # fmt: skip


@router.get(f"{ITEMS}/{{row_id:int}}")
def item_page(
    request: Request, row_id: RowId, setup: SetupDep, uow: UowDep, current: AdministratorDep
) -> Response:
    return _item_page(request, setup, uow, current, row_id)


@router.post(f"{ITEMS}/{{row_id:int}}", dependencies=[CsrfDep])
def edit_item(
    request: Request,
    row_id: RowId,
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
    comments: FormText = "",
) -> Response:
    """The same change as `PUT /api/v1/jumpoints/ssh-items/{id}` (`service.replace_item`):
    a host key the server changed on purpose pinned again, another credential..."""
    form = {"name": name, "jumpoint_id": jumpoint_id, "host": host, "port": port}
    form |= {"username": username, "credential_id": credential_id, "host_key": host_key}
    form |= {"jump_group": jump_group, "tag": tag, "comments": comments}
    actor = page_actor(request, current)
    try:
        service.replace_item(uow, setup, actor, row_id, _item_request(form))
    except ServiceError as error:
        uow.session.rollback()
        return _item_page(request, setup, uow, current, row_id, error, form)
    uow.commit()
    return redirect(f"{ITEMS}/{row_id}?saved=1")


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
