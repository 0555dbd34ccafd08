"""The machine interface under `/appliance`: Status > Basics and Networking > IP Configuration."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.background import BackgroundTask

from bastion import release
from bastion.adapters import slots
from bastion.adapters.web.deps import AdministratorDep, CsrfDep, RuntimeDep, UowDep, page_actor
from bastion.adapters.web.install_views import last_outcomes
from bastion.adapters.web.pages_login import redirect
from bastion.adapters.web.runtime import Runtime
from bastion.adapters.web.templating import render, render_form
from bastion.services import audit, backup_schedule, factory, installs, network, status, updates
from bastion.services.auth import CurrentSession
from bastion.services.errors import ServiceError, UnavailableError
from bastion.services.ports import utc_now
from bastion.services.unit_of_work import UnitOfWork

router = APIRouter(include_in_schema=False)

BASICS = "/appliance/status/basics"
IP_CONFIGURATION = "/appliance/networking/ip-configuration"
LISTEN_ADDRESSES = "/appliance/networking/listen-addresses"

FormText = Annotated[str, Form()]


@router.get("/appliance")
def appliance_home() -> Response:
    return redirect(BASICS)


# Status > Basics.


@router.get(BASICS)
def basics(request: Request, runtime: RuntimeDep, current: AdministratorDep) -> Response:
    return _basics(request, runtime, current)


def _basics(
    request: Request,
    runtime: Runtime,
    current: CurrentSession,
    error: ServiceError | None = None,
) -> Response:
    shown = status.basics(
        release.site_version(),
        release.build_id(),
        release.base_description(slots.base_version(runtime.settings.data_dir)),
        runtime.started_at,
        utc_now(),
        runtime.clock.reading,
    )
    with runtime.uow() as uow:
        last_backup = backup_schedule.last_run(uow)
        licensed = updates.license_of(uow)
    return render_form(
        request,
        "status_basics.html",
        current,
        error,
        basics=shown,
        last_backup=last_backup,
        license=licensed,
        **last_outcomes(installs.history(runtime.settings.data_dir)),
    )


@router.post(f"{BASICS}/measure", dependencies=[CsrfDep])
async def measure_clock(runtime: RuntimeDep, current: AdministratorDep) -> Response:
    """Ask the NTP server now instead of waiting for the next poll."""
    await runtime.clock.measure()
    return redirect(BASICS)


@router.post(f"{BASICS}/factory-reset", dependencies=[CsrfDep])
async def factory_reset(
    request: Request,
    runtime: RuntimeDep,
    current: AdministratorDep,
    confirmation: FormText = "",
) -> Response:
    """Erase the site; the next sign-in is the factory one (R40). Typed confirmation first."""
    try:
        factory.check_confirmation(confirmation)
        if runtime.factory_reset is None:
            raise UnavailableError("This appliance was not started by `bastion appliance serve`.")
        await run_in_threadpool(runtime.factory_reset, page_actor(request, current))
    except ServiceError as error:
        return _basics(request, runtime, current, error)
    return render(request, "factory_reset.html", None)


@router.post(f"{BASICS}/shut-down", dependencies=[CsrfDep])
def shut_down(
    request: Request, runtime: RuntimeDep, uow: UowDep, current: AdministratorDep
) -> Response:
    """Stop serving cleanly once this answer has gone out."""
    if runtime.request_shutdown is None:
        error = UnavailableError("This appliance was not started by `bastion appliance serve`.")
        return _basics(request, runtime, current, error)
    audit.record(uow, page_actor(request, current), "appliance.shut_down", "appliance")
    uow.commit()
    response = render(request, "shut_down.html", None)
    response.background = BackgroundTask(runtime.request_shutdown)
    return response


# Networking > IP Configuration.


def _ip_configuration(
    request: Request,
    runtime: Runtime,
    uow: UnitOfWork,
    current: CurrentSession,
    error: ServiceError | None = None,
    **form: str,
) -> Response:
    addresses = network.list_addresses(uow, runtime.listeners)
    ntp_server = network.ntp_server(uow, runtime.settings.ntp_server_default)
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
    request: Request, runtime: RuntimeDep, uow: UowDep, current: AdministratorDep
) -> Response:
    return _ip_configuration(request, runtime, uow, current)


@router.post(LISTEN_ADDRESSES, dependencies=[CsrfDep])
async def add_listen_address(
    request: Request,
    runtime: RuntimeDep,
    uow: UowDep,
    current: AdministratorDep,
    address: FormText = "",
) -> Response:
    """The address is bound before it is saved: only an address that serves is kept."""
    actor = page_actor(request, current)
    try:
        await network.add_address(uow, runtime.listeners, actor, address)
    except ServiceError as error:
        return _ip_configuration(request, runtime, uow, current, error, address=address)
    uow.commit()
    return redirect(IP_CONFIGURATION)


async def _set_enabled(
    request: Request,
    runtime: Runtime,
    uow: UnitOfWork,
    current: CurrentSession,
    row_id: int,
    enabled: bool,
) -> Response:
    actor = page_actor(request, current)
    try:
        await network.set_enabled(uow, runtime.listeners, actor, row_id, enabled)
    except ServiceError as error:
        return _ip_configuration(request, runtime, uow, current, error)
    uow.commit()
    return redirect(IP_CONFIGURATION)


@router.post(f"{LISTEN_ADDRESSES}/{{row_id}}/enable", dependencies=[CsrfDep])
async def enable_listen_address(
    request: Request, row_id: int, runtime: RuntimeDep, uow: UowDep, current: AdministratorDep
) -> Response:
    return await _set_enabled(request, runtime, uow, current, row_id, enabled=True)


@router.post(f"{LISTEN_ADDRESSES}/{{row_id}}/disable", dependencies=[CsrfDep])
async def disable_listen_address(
    request: Request, row_id: int, runtime: RuntimeDep, uow: UowDep, current: AdministratorDep
) -> Response:
    return await _set_enabled(request, runtime, uow, current, row_id, enabled=False)


@router.post(f"{LISTEN_ADDRESSES}/{{row_id}}/remove", dependencies=[CsrfDep])
def remove_listen_address(
    request: Request, row_id: int, runtime: RuntimeDep, uow: UowDep, current: AdministratorDep
) -> Response:
    try:
        network.remove_address(uow, page_actor(request, current), row_id)
    except ServiceError as error:
        return _ip_configuration(request, runtime, uow, current, error)
    uow.commit()
    return redirect(IP_CONFIGURATION)


@router.post("/appliance/networking/ntp", dependencies=[CsrfDep])
async def set_ntp_server(
    request: Request,
    runtime: RuntimeDep,
    uow: UowDep,
    current: AdministratorDep,
    server: FormText = "",
) -> Response:
    """Save the NTP server, then measure against it so Status > Basics shows the result."""
    try:
        network.set_ntp_server(uow, page_actor(request, current), server)
    except ServiceError as error:
        return _ip_configuration(request, runtime, uow, current, error, server=server)
    uow.commit()
    await runtime.clock.measure()
    return redirect(IP_CONFIGURATION)
