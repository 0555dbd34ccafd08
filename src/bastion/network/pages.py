"""Networking > IP Configuration under `/appliance`: listen addresses and the NTP server."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool

from bastion.accounts.deps import AdministratorDep, CsrfDep, page_actor
from bastion.accounts.sign_in import CurrentSession
from bastion.network import service as network
from bastion.network.api import NetworkDep
from bastion.network.service import NetworkSetup
from bastion.platform.errors import ServiceError
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.deps import UowDep
from bastion.platform.web.forms import FormText, redirect, reloads_go_to
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import RowId
from bastion.platform.web.templating import render_form

router = Router(include_in_schema=False)

IP_CONFIGURATION = "/appliance/networking/ip-configuration"
LISTEN_ADDRESSES = "/appliance/networking/listen-addresses"


def _ip_configuration(
    request: Request,
    setup: NetworkSetup,
    uow: UnitOfWork,
    current: CurrentSession,
    error: ServiceError | None = None,
    **form: str,
) -> Response:
    addresses = network.list_addresses(uow, setup.listeners)
    ntp_server = network.ntp_server(uow, setup.ntp_server_default)
    return render_form(
        request,
        "ip_configuration.html",
        current,
        error,
        addresses=addresses,
        ntp_server=ntp_server,
        form=form,
    )


@router.get(IP_CONFIGURATION)
def ip_configuration(
    request: Request, setup: NetworkDep, uow: UowDep, current: AdministratorDep
) -> Response:
    return _ip_configuration(request, setup, uow, current)


@router.post(LISTEN_ADDRESSES, dependencies=[CsrfDep])
async def add_listen_address(
    request: Request,
    setup: NetworkDep,
    uow: UowDep,
    current: AdministratorDep,
    address: FormText = "",
) -> Response:
    """The address is bound before it is saved: only an address that serves is kept."""
    actor = page_actor(request, current)
    try:
        await network.add_address(uow, setup.listeners, actor, address)
    except ServiceError as error:
        return await run_in_threadpool(
            _ip_configuration, request, setup, uow, current, error, address=address
        )
    return redirect(IP_CONFIGURATION)


async def _set_enabled(
    request: Request,
    setup: NetworkSetup,
    uow: UnitOfWork,
    current: CurrentSession,
    row_id: RowId,
    enabled: bool,
) -> Response:
    actor = page_actor(request, current)
    try:
        await network.set_enabled(uow, setup.listeners, actor, row_id, enabled)
    except ServiceError as error:
        return await run_in_threadpool(_ip_configuration, request, setup, uow, current, error)
    return redirect(IP_CONFIGURATION)


@router.post(f"{LISTEN_ADDRESSES}/{{row_id:int}}/enable", dependencies=[CsrfDep])
async def enable_listen_address(
    request: Request, row_id: RowId, setup: NetworkDep, uow: UowDep, current: AdministratorDep
) -> Response:
    return await _set_enabled(request, setup, uow, current, row_id, enabled=True)


@router.post(f"{LISTEN_ADDRESSES}/{{row_id:int}}/disable", dependencies=[CsrfDep])
async def disable_listen_address(
    request: Request, row_id: RowId, setup: NetworkDep, uow: UowDep, current: AdministratorDep
) -> Response:
    return await _set_enabled(request, setup, uow, current, row_id, enabled=False)


@router.post(f"{LISTEN_ADDRESSES}/{{row_id:int}}/remove", dependencies=[CsrfDep])
def remove_listen_address(
    request: Request, row_id: RowId, setup: NetworkDep, uow: UowDep, current: AdministratorDep
) -> Response:
    try:
        network.remove_address(uow, page_actor(request, current), row_id)
    except ServiceError as error:
        return _ip_configuration(request, setup, uow, current, error)
    uow.commit()
    return redirect(IP_CONFIGURATION)


@router.post("/appliance/networking/ntp", dependencies=[CsrfDep])
async def set_ntp_server(
    request: Request,
    setup: NetworkDep,
    uow: UowDep,
    current: AdministratorDep,
    server: FormText = "",
) -> Response:
    """Save the NTP server, then measure against it so Status > Basics shows the result."""
    try:
        await network.change_ntp_server(uow, setup.clock, page_actor(request, current), server)
    except ServiceError as error:
        return await run_in_threadpool(
            _ip_configuration, request, setup, uow, current, error, server=server
        )
    return redirect(IP_CONFIGURATION)


# Addresses that only take a form: opened again (a reload, a bookmark), they lead to its page.
reloads_go_to(
    router,
    IP_CONFIGURATION,
    LISTEN_ADDRESSES,
    *(f"{LISTEN_ADDRESSES}/{{row_id:int}}/{action}" for action in ("enable", "disable", "remove")),
    "/appliance/networking/ntp",
)
