"""The JSON API: the same operations as the pages, through the same services."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.security import HTTPBasic

from bastion import release
from bastion.adapters import slots
from bastion.adapters.web import api_schemas as s
from bastion.adapters.web.deps import ApiActorDep, RuntimeDep, UowDep, source_of
from bastion.services import accounts, api_clients, audit, network, status
from bastion.services.errors import AuthenticationError
from bastion.services.ports import utc_now

router = APIRouter(prefix="/api/v1", tags=["appliance"])
_basic = HTTPBasic(auto_error=False)


@router.post("/oauth/token", response_model=s.TokenOut, tags=["authentication"])
async def token(
    request: Request,
    runtime: RuntimeDep,
    uow: UowDep,
    grant_type: Annotated[str, Form()] = "client_credentials",
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
) -> s.TokenOut:
    """OAuth 2 client credentials: form fields or HTTP Basic; the token lasts one hour."""
    basic = await _basic(request)
    if basic is not None:
        client_id, client_secret = basic.username, basic.password
    if grant_type != "client_credentials":
        raise AuthenticationError("Only grant_type=client_credentials is supported.")
    if not client_id or not client_secret:
        raise AuthenticationError("Send client_id and client_secret (form fields or HTTP Basic).")
    issued = api_clients.issue_token(
        uow, runtime.hasher, client_id, client_secret, runtime.api_token_ttl, source_of(request)
    )
    uow.commit()
    return s.TokenOut(access_token=issued.access_token, expires_in=issued.expires_in)


@router.get("/status", response_model=s.StatusOut)
def get_status(runtime: RuntimeDep, actor: ApiActorDep) -> s.StatusOut:
    now = utc_now()
    b = status.basics(
        release.site_version(),
        release.build_id(),
        release.base_description(slots.base_version(runtime.settings.data_dir)),
        runtime.started_at,
        now,
        runtime.clock.reading,
    )
    clock = s.ClockOut(
        level=b.clock.level.value,
        message=b.clock.message,
        offset_seconds=b.clock.offset_seconds,
        measured_at=b.clock_measured_at,
    )
    return s.StatusOut(
        product_version=b.product_version,
        build=b.build,
        base_version=b.base_version,
        started_at=b.started_at,
        uptime_seconds=b.uptime.total_seconds(),
        clock_utc=now,
        clock=clock,
    )


@router.get("/accounts", response_model=list[s.AccountOut])
def list_accounts(uow: UowDep, actor: ApiActorDep) -> list[accounts.AccountView]:
    return accounts.list_accounts(uow)


@router.post("/accounts", response_model=s.AccountOut, status_code=201)
def create_account(
    body: s.AccountCreate, runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep
) -> accounts.AccountView:
    created = accounts.create_account(
        uow, runtime.hasher, actor, body.username, body.password, body.role, body.display_name
    )
    uow.commit()
    return created


@router.get("/accounts/{account_id}", response_model=s.AccountOut)
def get_account(account_id: int, uow: UowDep, actor: ApiActorDep) -> accounts.AccountView:
    return accounts.get_account(uow, account_id)


@router.patch("/accounts/{account_id}", response_model=s.AccountOut)
def update_account(
    account_id: int, body: s.AccountUpdate, runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep
) -> accounts.AccountView:
    updated = accounts.update_account(
        uow, runtime.hasher, actor, account_id, **body.model_dump(exclude_none=True)
    )
    uow.commit()
    return updated


@router.get("/api-clients", response_model=list[s.ApiClientOut])
def list_api_clients(uow: UowDep, actor: ApiActorDep) -> list[api_clients.ApiClientView]:
    return api_clients.list_clients(uow)


@router.post("/api-clients", response_model=s.ApiClientCreated, status_code=201)
def create_api_client(
    body: s.ApiClientCreate, runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep
) -> s.ApiClientCreated:
    created = api_clients.create_client(uow, runtime.hasher, actor, body.name)
    uow.commit()
    out = s.ApiClientOut.model_validate(created.client)
    return s.ApiClientCreated(**out.model_dump(), client_secret=created.client_secret)


@router.delete("/api-clients/{api_client_id}", response_model=s.ApiClientOut)
def revoke_api_client(
    api_client_id: int, uow: UowDep, actor: ApiActorDep
) -> api_clients.ApiClientView:
    revoked = api_clients.revoke_client(uow, actor, api_client_id)
    uow.commit()
    return revoked


@router.get("/audit", response_model=s.AuditPage)
def audit_log(
    uow: UowDep,
    actor: ApiActorDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    action: str | None = None,
) -> s.AuditPage:
    entries, total = audit.page(uow, limit, offset, action)
    return s.AuditPage(total=total, entries=[s.AuditOut.model_validate(e) for e in entries])


@router.get("/network/listen-addresses", response_model=list[s.ListenAddressOut])
def list_listen_addresses(
    runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep
) -> list[network.ListenAddressView]:
    return network.list_addresses(uow, runtime.listeners)


@router.post("/network/listen-addresses", response_model=s.ListenAddressOut, status_code=201)
async def add_listen_address(
    body: s.ListenAddressCreate, runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep
) -> network.ListenAddressView:
    added = await network.add_address(uow, runtime.listeners, actor, body.address)
    uow.commit()
    return added


@router.patch("/network/listen-addresses/{row_id}", response_model=s.ListenAddressOut)
async def update_listen_address(
    row_id: int,
    body: s.ListenAddressUpdate,
    runtime: RuntimeDep,
    uow: UowDep,
    actor: ApiActorDep,
) -> network.ListenAddressView:
    updated = await network.set_enabled(uow, runtime.listeners, actor, row_id, body.enabled)
    uow.commit()
    return updated


@router.delete("/network/listen-addresses/{row_id}", status_code=204)
def remove_listen_address(row_id: int, uow: UowDep, actor: ApiActorDep) -> None:
    network.remove_address(uow, actor, row_id)
    uow.commit()


@router.get("/network/ntp", response_model=s.NtpSettings)
def get_ntp(runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep) -> s.NtpSettings:
    return s.NtpSettings(server=network.ntp_server(uow, runtime.settings.ntp_server_default))


@router.put("/network/ntp", response_model=s.NtpSettings)
async def set_ntp(
    body: s.NtpSettings, runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep
) -> s.NtpSettings:
    server = network.set_ntp_server(uow, actor, body.server)
    uow.commit()
    await runtime.clock.measure()
    return s.NtpSettings(server=server)
