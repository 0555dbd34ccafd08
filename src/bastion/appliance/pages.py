"""The machine interface under `/appliance`: Status > Basics, factory reset and shut down."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.background import BackgroundTask

from bastion.accounts.deps import AdministratorDep, CsrfDep, page_actor
from bastion.accounts.sign_in import CurrentSession
from bastion.appliance import service
from bastion.appliance.service import ApplianceControl
from bastion.backups import schedule as backup_schedule
from bastion.installs import service as installs
from bastion.installs.views import last_outcomes
from bastion.network.api import NetworkDep
from bastion.network.service import NetworkSetup
from bastion.platform import audit, build
from bastion.platform.clock import utc_now
from bastion.platform.errors import ServiceError, UnavailableError
from bastion.platform.runtime import Runtime
from bastion.platform.web.deps import RuntimeDep, UowDep
from bastion.platform.web.forms import FormText, redirect, reloads_go_to
from bastion.platform.web.routing import Router
from bastion.platform.web.templating import render, render_form
from bastion.sessions import service as sessions
from bastion.sessions.relay import Rendezvous
from bastion.supervisor import slots

router = Router(include_in_schema=False)

BASICS = "/appliance/status/basics"


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
    shown = service.basics(
        build.site_version(),
        build.build_id(),
        build.base_description(slots.base_version(runtime.settings.data_dir)),
        runtime.started_at,
        utc_now(),
        runtime.part(NetworkSetup).clock.reading,
    )
    rendezvous = runtime.maybe(Rendezvous)
    with runtime.uow() as uow:
        last_backup = backup_schedule.last_run(uow)
        licence = sessions.licence_use(uow, rendezvous.seats() if rendezvous else [])
    return render_form(
        request,
        "status_basics.html",
        current,
        error,
        basics=shown,
        last_backup=last_backup,
        licence=licence,
        **last_outcomes(installs.history(runtime.settings.data_dir)),
    )


@router.post(f"{BASICS}/measure", dependencies=[CsrfDep])
async def measure_clock(network: NetworkDep, current: AdministratorDep) -> Response:
    """Ask the NTP server now instead of waiting for the next poll."""
    await network.clock.measure()
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
        service.check_confirmation(confirmation)
        control = runtime.part(ApplianceControl)
        await run_in_threadpool(control.factory_reset, page_actor(request, current))
    except ServiceError as error:
        return await run_in_threadpool(_basics, request, runtime, current, error)
    return render(request, "factory_reset.html", None)


@router.post(f"{BASICS}/shut-down", dependencies=[CsrfDep])
def shut_down(
    request: Request, runtime: RuntimeDep, uow: UowDep, current: AdministratorDep
) -> Response:
    """Stop serving cleanly once this answer has gone out."""
    shut_down = runtime.part(ApplianceControl).shut_down
    if shut_down is None:
        error = UnavailableError("This appliance was not started by `bastion appliance serve`.")
        return _basics(request, runtime, current, error)
    audit.record(uow, page_actor(request, current), "appliance.shut_down", "appliance")
    uow.commit()
    response = render(request, "shut_down.html", None)
    response.background = BackgroundTask(shut_down)
    return response


# Addresses that only take a form: opened again (a reload, a bookmark), they lead to its page.
reloads_go_to(router, BASICS, f"{BASICS}/measure", f"{BASICS}/factory-reset", f"{BASICS}/shut-down")
