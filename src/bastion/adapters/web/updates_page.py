"""The `/appliance > Updates` page itself, rendered by every handler that ends on it."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from bastion.adapters.web.deps import page_actor
from bastion.adapters.web.install_views import progress, supervisor_of
from bastion.adapters.web.runtime import Runtime
from bastion.adapters.web.templating import render_form
from bastion.services import installs, updates
from bastion.services.auth import CurrentSession
from bastion.services.errors import ServiceError
from bastion.services.ports import utc_now
from bastion.services.unit_of_work import UnitOfWork

UPDATES = "/appliance/updates"


def update_setup(runtime: Runtime) -> updates.UpdateSetup:
    return updates.UpdateSetup.from_settings(runtime.settings)


def _appliance_facts(uow: UnitOfWork, setup: updates.UpdateSetup) -> dict[str, Any]:
    """Installed versions, license and enrolment data; a missing piece is said, not hidden."""
    facts: dict[str, Any] = {
        "installed": {
            k.value: str(v) for k, v in updates.installed_versions(uow, setup.data_dir).items()
        },
        "license": updates.license_of(uow),
        "setup": setup,
    }
    try:
        facts["enrollment"] = updates.enrollment(setup)
        facts["rows"] = rows = updates.known_releases(uow, setup)
        facts["installable"] = can = installs.installable(uow, setup)
        facts["choices"] = [r.name for r in rows if r.downloaded and r.name in can]
    except ServiceError as error:
        facts["setup_error"] = str(error)
    return facts


def _install_facts(runtime: Runtime) -> dict[str, Any]:
    """The install in progress or scheduled and the last outcomes, from the supervisor."""
    try:
        status = supervisor_of(runtime).status()
    except ServiceError as error:
        return {"install_error": str(error)}
    return {"install": progress(status, utc_now())}


def _download_key(
    uow: UnitOfWork, setup: updates.UpdateSetup, request: Request, current: CurrentSession
) -> dict[str, Any]:
    """A fresh key on every view, time-stamped and audited."""
    try:
        key = updates.download_key(uow, setup, page_actor(request, current))
    except ServiceError as error:
        return {"key_error": str(error)}
    uow.commit()
    return {"download_key": key}


def updates_page(
    request: Request,
    runtime: Runtime,
    uow: UnitOfWork,
    current: CurrentSession,
    error: ServiceError | None = None,
    **shown: Any,
) -> Response:
    setup = update_setup(runtime)
    context = _appliance_facts(uow, setup) | _install_facts(runtime)
    context |= _download_key(uow, setup, request, current)
    return render_form(request, "updates.html", current, error, **(context | shown))
