"""Who is asking: the signed-in person behind a page, the API client behind a bearer
token, and the CSRF check of every form. Every capability's pages and API use these."""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import quote

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import HTTPBearer, OAuth2

from bastion.accounts import api_clients, sign_in
from bastion.accounts.service import AccountsSetup
from bastion.accounts.sign_in import CurrentSession
from bastion.platform.errors import AuthenticationError, PermissionDeniedError
from bastion.platform.principals import Actor, Principal
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.csrf import CSRF_COOKIE, CSRF_FIELD, CSRF_HEADER, CsrfError
from bastion.platform.web.deps import UowDep, part, source_of

SESSION_COOKIE = "bastion_session"
AccountsDep = Annotated[AccountsSetup, Depends(part(AccountsSetup))]


class SignInRequiredError(Exception):
    """A page needs a signed-in user; the handler redirects to /login."""

    def __init__(self, next_url: str, message: str = "") -> None:
        self.next_url = next_url
        self.message = message


class PasswordChangeRequiredError(Exception):
    """The account must choose a new password before any other page opens (R39)."""


def _session(request: Request, setup: AccountsSetup, uow: UnitOfWork) -> CurrentSession:
    token = request.cookies.get(SESSION_COOKIE)
    next_url = quote(request.url.path)
    if not token:
        raise SignInRequiredError(next_url)
    try:
        current = sign_in.resolve_session(uow, token, setup.session_limits)
    except AuthenticationError as error:
        uow.keep_record_of(error)
        raise SignInRequiredError(next_url, str(error)) from None
    uow.commit()  # when the session was last seen
    return current


def session_allowing_password_change(
    request: Request, setup: AccountsDep, uow: UowDep
) -> CurrentSession:
    return _session(request, setup, uow)


def signed_in(request: Request, setup: AccountsDep, uow: UowDep) -> CurrentSession:
    current = _session(request, setup, uow)
    if current.must_change_password:
        raise PasswordChangeRequiredError()
    return current


async def administrator(
    current: Annotated[CurrentSession, Depends(signed_in)],
) -> CurrentSession:
    if not current.principal.is_administrator:
        raise PermissionDeniedError("This page is for administrators only.")
    return current


SignedInDep = Annotated[CurrentSession, Depends(signed_in)]
AdministratorDep = Annotated[CurrentSession, Depends(administrator)]
PasswordChangeSessionDep = Annotated[CurrentSession, Depends(session_allowing_password_change)]


def page_actor(request: Request, current: CurrentSession) -> Actor:
    return Actor(current.principal, source_of(request))


def expected_csrf(request: Request, setup: AccountsSetup, uow: UnitOfWork) -> str | None:
    """The session's token when signed in, otherwise the pre-session cookie's."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            return sign_in.resolve_session(uow, token, setup.session_limits).csrf_token
        except AuthenticationError:
            pass
    return request.cookies.get(CSRF_COOKIE)


async def csrf_protect(request: Request, setup: AccountsDep, uow: UowDep) -> None:
    """Every form post carries the token; a missing or wrong one changes nothing. The
    form is read on the event loop, the session on a worker thread: a database read on
    the loop would hold up every connection of the site while it waits."""
    form = await request.form()
    sent = str(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or "")
    expected = await anyio.to_thread.run_sync(expected_csrf, request, setup, uow)
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise CsrfError()


CsrfDep = Depends(csrf_protect)


TOKEN_URL = "/api/v1/oauth/token"
_bearer = HTTPBearer(
    scheme_name="BearerToken",
    description=f"A bearer token from POST {TOKEN_URL}, valid for one hour.",
    auto_error=False,
)
_client_credentials = OAuth2(
    flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl=TOKEN_URL)),
    scheme_name="ClientCredentials",
    description="An API client's id and secret, traded for a bearer token (OAuth 2).",
    auto_error=False,
)


def principal_from_header(request: Request, uow: UnitOfWork) -> Principal:
    """The API client behind the request's `Authorization: Bearer` header."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            f"Send 'Authorization: Bearer <token>'; get a token from POST {TOKEN_URL}."
        )
    return api_clients.resolve_token(uow, token.strip())


def api_actor(
    request: Request,
    uow: UowDep,
    _bearer_token: Annotated[object, Depends(_bearer)],
    _client_token: Annotated[object, Depends(_client_credentials)],
) -> Actor:
    """The API client behind the request, and where it asks from. Both security schemes
    name the same header; they are declared so that the API's schema says how to
    authenticate."""
    return Actor(principal_from_header(request, uow), source_of(request))


ApiActorDep = Annotated[Actor, Depends(api_actor)]
