"""Installing base and site releases through the API: `/api/v1/updates/install`.

`POST` plans the install (order, estimate) and hands it to the supervisor;
a site release built with trust anchors some Jump Clients lack answers 409 with
their count until `accept_offline_clients` is sent; a new major version answers
409 with its licence text until `accept_licence` is sent. `GET` is the
supervisor's status; `DELETE` cancels a scheduled install.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.responses import JSONResponse

from bastion.accounts.deps import ApiActorDep
from bastion.installs import schedule as install_schedule
from bastion.installs import service as installs
from bastion.installs.schemas import (
    InstallIn,
    InstallOut,
    InstallPlanOut,
    LicenceRequiredBody,
    LicenceRequiredOut,
    OfflineClientsOut,
)
from bastion.installs.views import supervisor_of
from bastion.platform.web.deps import RuntimeDep, UowDep
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import errors

router = Router(prefix="/api/v1/updates/install", tags=["updates"])
INSTALL_ERRORS: dict[int | str, dict[str, Any]] = {
    **errors(
        400,
        404,
        e400="no release chosen, a license add-on chosen, or a start time that has passed, "
        "is more than 7 days ahead or comes with a delay.",
        e404="a chosen release is not listed; check for updates first.",
    ),
    409: {
        "model": LicenceRequiredBody,
        "description": "Accept the licence agreement first (the body holds it), or a chosen "
        "release is not downloaded, blocked or already installing.",
    },
}


def _plan_out(chosen: installs.InstallPlan) -> InstallPlanOut:
    return InstallPlanOut(
        order=chosen.names,
        estimate_seconds=chosen.estimate.seconds,
        paused_seconds=chosen.estimate.paused_seconds,
        watched_seconds=chosen.estimate.watched_seconds,
        database_bytes=chosen.estimate.database_bytes,
        package_bytes=chosen.estimate.package_bytes,
        licences=list(chosen.licences),
        offline_clients=[
            OfflineClientsOut(release=name, offline=check.offline, total=check.total)
            for name, check in chosen.offline.items()
        ],
    )


def _licence_required(error: installs.LicenceRequiredError) -> JSONResponse:
    body = LicenceRequiredOut(message=str(error), release=error.release, licence=error.text)
    return JSONResponse({"error": body.model_dump()}, status_code=409)


@router.post("", status_code=202, response_model=InstallOut, responses=INSTALL_ERRORS)
def install(body: InstallIn, runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep) -> Any:
    """Install downloaded releases in dependency order, now, after a delay or at a time."""
    start = install_schedule.start_time(body.delay_seconds, body.not_before)
    setup = runtime.part(installs.InstallsSetup)
    chosen = installs.plan(uow, setup, body.releases, body.retry)
    try:
        answer = installs.submit(
            uow,
            setup,
            actor,
            chosen,
            body.accept_licence,
            start,
            accepted_offline=body.accept_offline_clients,
        )
    except installs.LicenceRequiredError as error:
        return _licence_required(error)
    uow.commit()
    return InstallOut(
        install_id=answer.install_id,
        not_before=datetime.fromisoformat(answer.not_before),
        plan=_plan_out(chosen),
    )


@router.get("")
def install_status(runtime: RuntimeDep, actor: ApiActorDep) -> dict[str, Any]:
    """The supervisor's status: state, pending, journal (steps done of all), history."""
    return supervisor_of(runtime).status().to_wire()


@router.delete("", responses=errors(409, e409="no install is scheduled."))
def cancel_install(runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep) -> dict[str, bool]:
    """Cancel the scheduled install; one that has begun finishes or rolls back."""
    installs.cancel(uow, runtime.part(installs.InstallsSetup), actor)
    uow.commit()
    return {"cancelled": True}
