"""The site interface under `/login`: sign-in, password change, home, accounts, API clients.

Each handler parses its form, calls one service, commits and redirects, or re-renders
the form with the service's message and the matching status code.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from bastion.accounts import api_clients, sign_in
from bastion.accounts import service as accounts
from bastion.accounts.deps import (
    SESSION_COOKIE,
    AccountsDep,
    AdministratorDep,
    CsrfDep,
    PasswordChangeRequiredError,
    PasswordChangeSessionDep,
    SignedInDep,
    SignInRequiredError,
    page_actor,
)
from bastion.accounts.rules import (
    FIRST_LOGIN_USERNAME,
    MIN_PASSWORD_LENGTH,
    password_hint,
)
from bastion.accounts.service import AccountsSetup
from bastion.accounts.sign_in import CurrentSession
from bastion.platform.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ServiceError,
)
from bastion.platform.principals import Role
from bastion.platform.runtime import Runtime
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.app import Handler
from bastion.platform.web.deps import RuntimeDep, UowDep, source_of
from bastion.platform.web.forms import FormText, local_path, redirect, reloads_go_to
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import MAX_ID, RowId
from bastion.platform.web.templating import PageContext, render, render_form

router = Router(include_in_schema=False)

HOME = "/login/home"
CHANGE_PASSWORD = "/login/change-password"
SESSION_ENDED = "Your session ended, please sign in again"
FIRST_CHANGE = "You signed in with the factory password; choose your own before continuing."
SET_BY_ADMINISTRATOR = "An administrator set your password; choose your own before continuing."
ROLES = [role.value for role in Role]


async def sign_in_required(request: Request, error: SignInRequiredError) -> Response:
    """To the sign-in page, saying why when a session ended (an install ends them all)."""
    reason = "&ended=1" if error.message else ""
    if sign_in.UPDATE_SIGN_OUT in error.message:
        reason = "&ended=update"
    return RedirectResponse(f"/login?next={error.next_url}{reason}", status_code=303)


async def password_change_required(
    request: Request, error: PasswordChangeRequiredError
) -> Response:
    return redirect(CHANGE_PASSWORD)


EXCEPTION_HANDLERS: dict[type[Exception], Handler] = {
    SignInRequiredError: sign_in_required,
    PasswordChangeRequiredError: password_change_required,
}


def password_fields(request: Request) -> dict[str, Any]:
    """What a password field says and checks, taken from the policy's own rules."""
    return {
        "password_hint": password_hint(),
        "own_password_hint": password_hint(changing_own=True),
        "min_password_length": MIN_PASSWORD_LENGTH,
    }


TEMPLATE_CONTEXT: dict[str, list[PageContext]] = {
    template: [password_fields] for template in ("change_password.html", "users.html", "user.html")
}


def _account_id(current: CurrentSession) -> int:
    account_id = current.principal.account_id
    if account_id is None:
        raise PermissionDeniedError("This page is for people who sign in with an account.")
    return account_id


# Sign-in and sign-out.


def _has_session(request: Request, setup: AccountsSetup, uow: UnitOfWork) -> bool:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return False
    try:
        sign_in.resolve_session(uow, token, setup.session_limits)
    except AuthenticationError:
        return False
    return True


@router.get("/login")
def login_form(
    request: Request,
    setup: AccountsDep,
    uow: UowDep,
    next_url: Annotated[str | None, Query(alias="next")] = None,
    ended: str | None = None,
) -> Response:
    if _has_session(request, setup, uow):
        return redirect(HOME)
    notice = _ended_notice(setup, uow) if ended == "update" else None
    notice = SESSION_ENDED if ended == "1" else notice
    response = render(request, "login.html", next=local_path(next_url) or "", notice=notice)
    if request.cookies.get(SESSION_COOKIE):
        _forget_session(response)
    return response


def _ended_notice(setup: AccountsSetup, uow: UnitOfWork) -> str:
    """Why the session ended: an install's switch signs everyone out (R5)."""
    switched = sign_in.recent_update_sign_out(uow, setup.session_limits.maximum)
    if switched is None:
        return SESSION_ENDED
    return (
        f"You were signed out because the appliance was updated to {switched}. "
        "Please sign in again."
    )


@router.post("/login", dependencies=[CsrfDep])
async def submit_sign_in(
    request: Request,
    runtime: RuntimeDep,
    setup: AccountsDep,
    username: FormText = "",
    password: FormText = "",
    next_url: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """The password is checked off the event loop and outside any transaction; the
    sign-in commits its own record of the attempt (see `sign_in.sign_in`)."""
    target = local_path(next_url)
    try:
        signed_in = await sign_in.sign_in(
            runtime.uow, setup.hasher, setup.lockout, username, password, source_of(request)
        )
    except ServiceError as error:
        return render_form(request, "login.html", None, error, username=username, next=target or "")
    response = redirect(CHANGE_PASSWORD if signed_in.must_change_password else target or HOME)
    response.set_cookie(
        SESSION_COOKIE, signed_in.token, secure=True, httponly=True, samesite="strict", path="/"
    )
    return response


def _forget_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")


@router.post("/login/logout", dependencies=[CsrfDep])
def sign_out(request: Request, uow: UowDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        sign_in.sign_out(uow, token, source_of(request))
        uow.commit()
    response = redirect("/login")
    _forget_session(response)
    return response


# Own password.


def _forced_reason(current: CurrentSession) -> str | None:
    if not current.must_change_password:
        return None
    return FIRST_CHANGE if current.principal.name == FIRST_LOGIN_USERNAME else SET_BY_ADMINISTRATOR


@router.get(CHANGE_PASSWORD)
def change_password_form(request: Request, current: PasswordChangeSessionDep) -> Response:
    return render(request, "change_password.html", current, forced=_forced_reason(current))


@router.post(CHANGE_PASSWORD, dependencies=[CsrfDep])
def change_password(
    request: Request,
    setup: AccountsDep,
    uow: UowDep,
    current: PasswordChangeSessionDep,
    current_password: FormText = "",
    new_password: FormText = "",
    confirm_password: FormText = "",
) -> Response:
    forced = _forced_reason(current)
    try:
        accounts.change_own_password(
            uow,
            setup.hasher,
            page_actor(request, current),
            _account_id(current),
            current_password,
            new_password,
            confirm_password,
        )
    except ServiceError as error:
        return render_form(request, "change_password.html", current, error, forced=forced)
    uow.commit()
    return redirect(f"{HOME}?password_changed=1")


# Home.


@router.get(HOME)
def home(
    request: Request, uow: UowDep, current: SignedInDep, password_changed: str | None = None
) -> Response:
    account = accounts.get_account(uow, _account_id(current))
    return render(
        request, "home.html", current, account=account, password_changed=password_changed == "1"
    )


# Accounts.


@router.get("/login/users")
def users(
    request: Request,
    uow: UowDep,
    current: AdministratorDep,
    created: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    listed = accounts.list_accounts(uow)
    new = next((a for a in listed if a.id == created), None)
    return render(request, "users.html", current, accounts=listed, roles=ROLES, created=new)


@router.post("/login/users", dependencies=[CsrfDep])
def create_user(
    request: Request,
    setup: AccountsDep,
    uow: UowDep,
    current: AdministratorDep,
    username: FormText = "",
    display_name: FormText = "",
    role: FormText = Role.REPRESENTATIVE.value,
    password: FormText = "",
) -> Response:
    actor = page_actor(request, current)
    try:
        created = accounts.create_account(
            uow, setup.hasher, actor, username, password, role, display_name
        )
    except ServiceError as error:
        form = {"username": username, "display_name": display_name, "role": role}
        listed = accounts.list_accounts(uow)
        return render_form(
            request, "users.html", current, error, accounts=listed, roles=ROLES, form=form
        )
    uow.commit()
    return redirect(f"/login/users?created={created.id}")


@router.get("/login/users/{account_id:int}")
def user(
    request: Request,
    account_id: RowId,
    uow: UowDep,
    current: AdministratorDep,
    saved: str | None = None,
) -> Response:
    account = accounts.get_account(uow, account_id)
    return render(request, "user.html", current, account=account, roles=ROLES, saved=saved == "1")


@router.post("/login/users/{account_id:int}", dependencies=[CsrfDep])
def update_user(
    request: Request,
    account_id: RowId,
    runtime: RuntimeDep,
    setup: AccountsDep,
    uow: UowDep,
    current: AdministratorDep,
    display_name: FormText = "",
    role: FormText = "",
    disabled: Annotated[str | None, Form()] = None,
    new_password: FormText = "",
) -> Response:
    try:
        accounts.update_account(
            uow,
            setup.hasher,
            page_actor(request, current),
            account_id,
            display_name=display_name,
            role=role or None,
            disabled=disabled is not None,
            new_password=new_password or None,
        )
    except ServiceError as error:
        return _user_render_form(request, runtime, current, account_id, error)
    uow.commit()
    return redirect(f"/login/users/{account_id}?saved=1")


def _user_render_form(
    request: Request,
    runtime: Runtime,
    current: CurrentSession,
    account_id: RowId,
    error: ServiceError,
) -> Response:
    """Show the account as stored: the refused request's partial changes are never read back."""
    with runtime.uow() as fresh:
        account = accounts.get_account(fresh, account_id)
    return render_form(request, "user.html", current, error, account=account, roles=ROLES)


# API clients.


@router.get("/login/api-clients")
def api_client_list(request: Request, uow: UowDep, current: AdministratorDep) -> Response:
    clients = api_clients.list_clients(uow)
    return render(request, "api_clients.html", current, clients=clients)


@router.post("/login/api-clients", dependencies=[CsrfDep])
def create_api_client(
    request: Request,
    setup: AccountsDep,
    uow: UowDep,
    current: AdministratorDep,
    name: FormText = "",
) -> Response:
    """The secret is shown on this response only; it is never stored in clear."""
    try:
        created = api_clients.create_client(uow, setup.hasher, page_actor(request, current), name)
    except ServiceError as error:
        clients = api_clients.list_clients(uow)
        return render_form(request, "api_clients.html", current, error, clients=clients, name=name)
    uow.commit()
    clients = api_clients.list_clients(uow)
    return render(request, "api_clients.html", current, clients=clients, created=created)


@router.post("/login/api-clients/{api_client_id:int}/revoke", dependencies=[CsrfDep])
def revoke_api_client(
    request: Request, api_client_id: RowId, uow: UowDep, current: AdministratorDep
) -> Response:
    api_clients.revoke_client(uow, page_actor(request, current), api_client_id)
    uow.commit()
    return redirect("/login/api-clients")


# Addresses that only take a form: opened again (a reload, a bookmark), they lead to its page.
reloads_go_to(router, "/login", "/login/logout")
reloads_go_to(router, "/login/api-clients", "/login/api-clients/{api_client_id:int}/revoke")
