"""The network part of the JSON API: listen addresses and the NTP server."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from bastion.accounts.deps import ApiActorDep
from bastion.network import schemas as s
from bastion.network import service as network
from bastion.network.service import NetworkSetup
from bastion.platform.web.deps import UowDep, part
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import RowId, errors

router = Router(prefix="/api/v1", tags=["appliance"])
CANNOT_OPEN = "the address is not ADDR:PORT, or the appliance cannot listen on it."
NetworkDep = Annotated[NetworkSetup, Depends(part(NetworkSetup))]


@router.get("/network/listen-addresses", response_model=list[s.ListenAddressOut])
def list_listen_addresses(
    setup: NetworkDep, uow: UowDep, actor: ApiActorDep
) -> list[network.ListenAddressView]:
    return network.list_addresses(uow, setup.listeners)


@router.post(
    "/network/listen-addresses",
    response_model=s.ListenAddressOut,
    status_code=201,
    responses=errors(400, 409, e400=CANNOT_OPEN, e409="the address is in the list already."),
)
async def add_listen_address(
    body: s.ListenAddressCreate, setup: NetworkDep, uow: UowDep, actor: ApiActorDep
) -> network.ListenAddressView:
    return await network.add_address(uow, setup.listeners, actor, body.address)


@router.patch(
    "/network/listen-addresses/{row_id:int}",
    response_model=s.ListenAddressOut,
    responses=errors(
        400, 404, 409, e400=CANNOT_OPEN, e409="the last enabled address cannot be disabled."
    ),
)
async def update_listen_address(
    row_id: RowId,
    body: s.ListenAddressUpdate,
    setup: NetworkDep,
    uow: UowDep,
    actor: ApiActorDep,
) -> network.ListenAddressView:
    return await network.set_enabled(uow, setup.listeners, actor, row_id, body.enabled)


@router.delete(
    "/network/listen-addresses/{row_id:int}",
    status_code=204,
    responses=errors(404, 409, e409="an enabled address must be disabled first."),
)
def remove_listen_address(row_id: RowId, uow: UowDep, actor: ApiActorDep) -> None:
    network.remove_address(uow, actor, row_id)
    uow.commit()


@router.get("/network/ntp", response_model=s.NtpSettings)
def get_ntp(setup: NetworkDep, uow: UowDep, actor: ApiActorDep) -> s.NtpSettings:
    return s.NtpSettings(server=network.ntp_server(uow, setup.ntp_server_default))


@router.put(
    "/network/ntp",
    response_model=s.NtpSettings,
    responses=errors(400, e400="the server is not a host name or an IP address."),
)
async def set_ntp(
    body: s.NtpSettings, setup: NetworkDep, uow: UowDep, actor: ApiActorDep
) -> s.NtpSettings:
    server = await network.change_ntp_server(uow, setup.clock, actor, body.server)
    return s.NtpSettings(server=server)
