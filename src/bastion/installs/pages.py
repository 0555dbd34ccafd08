"""Installing base and site releases from `/appliance > Updates` (R4, R5).

Install This Update (or the form choosing several releases) shows the plan
first: the order and the estimate. Starting it hands the plan to the
supervisor; a new major version first shows its licence agreement to accept.
The page then follows the install through `GET .../installs/status`, polled by
``static/installs.js``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Form, Request, Response
from fastapi.responses import JSONResponse

from bastion.accounts.deps import AdministratorDep, CsrfDep, page_actor
from bastion.accounts.sign_in import CurrentSession
from bastion.installs import schedule as install_schedule
from bastion.installs import service as installs
from bastion.installs.views import progress, supervisor_of
from bastion.platform.clock import utc_now
from bastion.platform.errors import ServiceError
from bastion.platform.runtime import Runtime
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.deps import RuntimeDep, UowDep
from bastion.platform.web.forms import FormText, redirect, reloads_go_to
from bastion.platform.web.routing import Router
from bastion.platform.web.templating import render
from bastion.updates.page import UPDATES, updates_page

router = Router(include_in_schema=False)
INSTALLS = f"{UPDATES}/installs"

FormList = Annotated[list[str] | None, Form()]
FormFlag = Annotated[str | None, Form()]


@dataclass(frozen=True)
class InstallForm:
    """What the administrator chose; carried from the plan to the licence to the start."""

    releases: list[str] = field(default_factory=list)
    delay_minutes: str = ""
    start_at: str = ""
    retry: bool = False
    accept_offline: bool = False
    """The Jump Clients a release would take offline were acknowledged (R19)."""

    def start(self) -> datetime | None:
        delay = install_schedule.parse_minutes(self.delay_minutes) * 60
        return install_schedule.start_time(delay, install_schedule.parse_utc(self.start_at))


def _form(
    releases: list[str] | None,
    delay_minutes: str,
    start_at: str,
    retry: str | None,
    accept_offline: str | None = None,
) -> InstallForm:
    chosen = list(dict.fromkeys(r for r in releases or [] if r.strip()))
    return InstallForm(
        chosen,
        delay_minutes.strip(),
        start_at.strip(),
        retry is not None,
        accept_offline is not None,
    )


def _plan(runtime: Runtime, uow: UnitOfWork, form: InstallForm) -> installs.InstallPlan:
    return installs.plan(uow, runtime.part(installs.InstallsSetup), form.releases, form.retry)


@router.post(f"{INSTALLS}/plan", dependencies=[CsrfDep])
def show_plan(
    request: Request,
    runtime: RuntimeDep,
    uow: UowDep,
    current: AdministratorDep,
    releases: FormList = None,
    delay_minutes: FormText = "",
    start_at: FormText = "",
    retry: FormFlag = None,
) -> Response:
    """The order and the estimate, before anything starts."""
    form = _form(releases, delay_minutes, start_at, retry)
    try:
        start = form.start()
        chosen = _plan(runtime, uow, form)
    except ServiceError as error:
        return updates_page(request, runtime, uow, current, error, install_form=form)
    return updates_page(request, runtime, uow, current, plan=chosen, install_form=form, start=start)


@router.post(INSTALLS, dependencies=[CsrfDep])
def start_install(
    request: Request,
    runtime: RuntimeDep,
    uow: UowDep,
    current: AdministratorDep,
    releases: FormList = None,
    delay_minutes: FormText = "",
    start_at: FormText = "",
    retry: FormFlag = None,
    accept_licence: FormFlag = None,
    licence_shown: FormFlag = None,
    accept_offline_clients: FormFlag = None,
) -> Response:
    """Hand the plan to the supervisor; a new major version's licence comes first."""
    form = _form(releases, delay_minutes, start_at, retry, accept_offline_clients)
    try:
        chosen = _plan(runtime, uow, form)
        actor = page_actor(request, current)
        setup = runtime.part(installs.InstallsSetup)
        accepted = accept_licence is not None
        installs.submit(uow, setup, actor, chosen, accepted, form.start(), form.accept_offline)
    except installs.LicenceRequiredError as error:
        return _licence_page(request, current, form, error, licence_shown is not None)
    except ServiceError as error:
        return updates_page(request, runtime, uow, current, error, install_form=form)
    uow.commit()
    return redirect(f"{UPDATES}#install")


def _licence_page(
    request: Request,
    current: CurrentSession,
    form: InstallForm,
    error: installs.LicenceRequiredError,
    tried: bool,
) -> Response:
    return render(
        request,
        "updates_licence.html",
        current,
        release=error.release,
        licence=error.text,
        install_form=form,
        error="Tick “I accept” to install it." if tried else None,
    )


@router.post(f"{INSTALLS}/cancel", dependencies=[CsrfDep])
def cancel_install(
    request: Request, runtime: RuntimeDep, uow: UowDep, current: AdministratorDep
) -> Response:
    try:
        setup = runtime.part(installs.InstallsSetup)
        installs.cancel(uow, setup, page_actor(request, current))
    except ServiceError as error:
        return updates_page(request, runtime, uow, current, error)
    uow.commit()
    notice = "The scheduled install was cancelled; nothing was changed."
    return updates_page(request, runtime, uow, current, notice=notice)


@router.get(f"{INSTALLS}/status")
def install_progress(runtime: RuntimeDep, current: AdministratorDep) -> JSONResponse:
    """What `static/installs.js` shows: state, activity, steps done, elapsed."""
    status = supervisor_of(runtime).status()
    return JSONResponse(progress(status, utc_now()), headers={"Cache-Control": "no-store"})


# Addresses that only take a form: opened again (a reload, a bookmark), they lead to its page.
reloads_go_to(router, f"{UPDATES}#install", f"{INSTALLS}/plan", INSTALLS, f"{INSTALLS}/cancel")
