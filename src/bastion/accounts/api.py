"""The accounts' part of the JSON API: bearer tokens, accounts and API clients."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Form, Request
from fastapi.security import HTTPBasic

from bastion.accounts import api_clients
from bastion.accounts import schemas as s
from bastion.accounts import service as accounts
from bastion.accounts.deps import AccountsDep, ApiActorDep
from bastion.platform.errors import AuthenticationError
from bastion.platform.web.deps import RuntimeDep, UowDep
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import RowId, errors

router = Router(prefix="/api/v1", tags=["appliance"])
_basic = HTTPBasic(auto_error=False)
POLICY = f"the password breaks the policy ({s.PASSWORD_POLICY})."


@router.post(
    "/oauth/token",
    response_model=s.TokenOut,
    tags=["authentication"],
    responses=errors(
        401,
        429,
        e401="unknown client, wrong secret, or a revoked client.",
        e429="too many secrets are being checked at once.",
    ),
)
async def token(
    request: Request,
    setup: AccountsDep,
    runtime: RuntimeDep,
    grant_type: Annotated[Literal["client_credentials"], Form()] = "client_credentials",
    client_id: Annotated[str | None, Form(max_length=64)] = None,
    client_secret: Annotated[str | None, Form(max_length=256)] = None,
) -> s.TokenOut:
    """OAuth 2 client credentials: form fields or HTTP Basic; the token lasts one hour."""
    basic = await _basic(request)
    if basic is not None:
        client_id, client_secret = basic.username, basic.password
    if not client_id or not client_secret:
        raise AuthenticationError("Send client_id and client_secret (form fields or HTTP Basic).")
    issued = await api_clients.issue_token(
        runtime.uow, setup.hasher, client_id, client_secret, setup.api_token_ttl
    )
    return s.TokenOut(access_token=issued.access_token, expires_in=issued.expires_in)


@router.get("/accounts", response_model=list[s.AccountOut])
def list_accounts(uow: UowDep, actor: ApiActorDep) -> list[accounts.AccountView]:
    return accounts.list_accounts(uow)


@router.post(
    "/accounts",
    response_model=s.AccountOut,
    status_code=201,
    responses=errors(400, 409, e400=POLICY, e409="an account of this username exists."),
)
def create_account(
    body: s.AccountCreate, setup: AccountsDep, uow: UowDep, actor: ApiActorDep
) -> accounts.AccountView:
    created = accounts.create_account(
        uow, setup.hasher, actor, body.username, body.password, body.role, body.display_name
    )
    uow.commit()
    return created


@router.get("/accounts/{account_id:int}", response_model=s.AccountOut, responses=errors(404))
def get_account(account_id: RowId, uow: UowDep, actor: ApiActorDep) -> accounts.AccountView:
    return accounts.get_account(uow, account_id)


@router.patch(
    "/accounts/{account_id:int}",
    response_model=s.AccountOut,
    responses=errors(
        400,
        404,
        409,
        e400=POLICY,
        e409="the last active administrator cannot be demoted or disabled, nor can you "
        "disable your own account.",
    ),
)
def update_account(
    account_id: RowId, body: s.AccountUpdate, setup: AccountsDep, uow: UowDep, actor: ApiActorDep
) -> accounts.AccountView:
    updated = accounts.update_account(
        uow, setup.hasher, actor, account_id, **body.model_dump(exclude_none=True)
    )
    uow.commit()
    return updated


@router.get("/api-clients", response_model=list[s.ApiClientOut])
def list_api_clients(uow: UowDep, actor: ApiActorDep) -> list[api_clients.ApiClientView]:
    return api_clients.list_clients(uow)


@router.post(
    "/api-clients",
    response_model=s.ApiClientCreated,
    status_code=201,
    responses=errors(409, e409="an API client of this name exists."),
)
def create_api_client(
    body: s.ApiClientCreate, setup: AccountsDep, uow: UowDep, actor: ApiActorDep
) -> s.ApiClientCreated:
    """The answer holds the client's secret, once; it is never cached (no-store)."""
    created = api_clients.create_client(uow, setup.hasher, actor, body.name)
    uow.commit()
    out = s.ApiClientOut.model_validate(created.client)
    return s.ApiClientCreated(**out.model_dump(), client_secret=created.client_secret)


@router.delete(
    "/api-clients/{api_client_id:int}", response_model=s.ApiClientOut, responses=errors(404)
)
def revoke_api_client(
    api_client_id: RowId, uow: UowDep, actor: ApiActorDep
) -> api_clients.ApiClientView:
    revoked = api_clients.revoke_client(uow, actor, api_client_id)
    uow.commit()
    return revoked
