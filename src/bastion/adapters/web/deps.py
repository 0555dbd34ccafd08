"""FastAPI dependencies: the runtime, a unit of work, who is asking, and CSRF checks."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from bastion.adapters.web.runtime import Runtime
from bastion.domain.accounts import Principal
from bastion.services import api_clients, auth
from bastion.services.audit import Actor
from bastion.services.auth import CurrentSession
from bastion.services.errors import AuthenticationError, PermissionDeniedError
from bastion.services.unit_of_work import UnitOfWork

SESSION_COOKIE = "bastion_session"
CSRF_COOKIE = "bastion_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class SignInRequiredError(Exception):
    """A page needs a signed-in user; the handler redirects to /login."""

    def __init__(self, next_url: str, message: str = "") -> None:
        self.next_url = next_url
        self.message = message


class PasswordChangeRequiredError(Exception):
    """The account must choose a new password before any other page opens (R39)."""


class CsrfError(Exception):
    """A form arrived without the token this site put in it."""


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_uow(runtime: RuntimeDep) -> Iterator[UnitOfWork]:
    with runtime.uow() as uow:
        yield uow


UowDep = Annotated[UnitOfWork, Depends(get_uow)]


def source_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _session(request: Request, runtime: Runtime, uow: UnitOfWork) -> CurrentSession:
    token = request.cookies.get(SESSION_COOKIE)
    next_url = quote(request.url.path)
    if not token:
        raise SignInRequiredError(next_url)
    try:
        return auth.resolve_session(uow, token, runtime.session_limits)
    except AuthenticationError as error:
        raise SignInRequiredError(next_url, str(error)) from None


def session_allowing_password_change(
    request: Request, runtime: RuntimeDep, uow: UowDep
) -> CurrentSession:
    return _session(request, runtime, uow)


def signed_in(request: Request, runtime: RuntimeDep, uow: UowDep) -> CurrentSession:
    current = _session(request, runtime, uow)
    if current.must_change_password:
        raise PasswordChangeRequiredError()
    return current


def administrator(current: Annotated[CurrentSession, Depends(signed_in)]) -> CurrentSession:
    if not current.principal.is_administrator:
        raise PermissionDeniedError("This page is for administrators only.")
    return current


SignedInDep = Annotated[CurrentSession, Depends(signed_in)]
AdministratorDep = Annotated[CurrentSession, Depends(administrator)]


def page_actor(request: Request, current: CurrentSession) -> Actor:
    return Actor(current.principal, source_of(request))


def expected_csrf(request: Request, runtime: Runtime, uow: UnitOfWork) -> str | None:
    """The session's token when signed in, otherwise the pre-session cookie's."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            return auth.resolve_session(uow, token, runtime.session_limits).csrf_token
        except AuthenticationError:
            pass
    return request.cookies.get(CSRF_COOKIE)


async def csrf_protect(request: Request, runtime: RuntimeDep, uow: UowDep) -> None:
    """Every form post carries the token; a missing or wrong one changes nothing."""
    form = await request.form()
    sent = str(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or "")
    expected = expected_csrf(request, runtime, uow)
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise CsrfError()


CsrfDep = Depends(csrf_protect)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def api_principal(request: Request, uow: UowDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "Send 'Authorization: Bearer <token>'; get a token from POST /api/v1/oauth/token."
        )
    return api_clients.resolve_token(uow, token.strip())


def api_actor(request: Request, principal: Annotated[Principal, Depends(api_principal)]) -> Actor:
    return Actor(principal, source_of(request))


ApiActorDep = Annotated[Actor, Depends(api_actor)]
