"""The `/appliance > Updates` page itself, rendered by every handler that ends on it."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import Request, Response

from bastion.accounts.deps import page_actor
from bastion.accounts.sign_in import CurrentSession
from bastion.platform.errors import ServiceError
from bastion.platform.runtime import Runtime
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.templating import render_form
from bastion.updates import channel
from bastion.updates import service as updates
from bastion.updates.errors import as_on_updates_page

UPDATES = "/appliance/updates"


def update_setup(runtime: Runtime) -> updates.UpdateSetup:
    return runtime.part(updates.UpdateSetup)


def _appliance_facts(uow: UnitOfWork, setup: updates.UpdateSetup) -> dict[str, Any]:
    """Installed versions, license and enrolment data; a missing piece is said, not hidden.

    `setup` is the channel in effect: its site and update service URL, whether they come
    from this appliance's settings or the environment.
    """
    found = channel.in_effect(uow, setup)
    facts: dict[str, Any] = {
        "installed": {
            k.value: str(v) for k, v in updates.installed_versions(uow, setup.data_dir).items()
        },
        "license": updates.license_of(uow),
        "setup": found,
        "channel": found,
    }
    try:
        facts["enrollment"] = channel.enrollment(setup)
        facts["rows"] = updates.known_releases(uow, setup)
    except ServiceError as error:
        facts["setup_error"] = str(error)
    return facts


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
    context = _appliance_facts(uow, setup)
    ready = channel.readiness(context["channel"]).shown_with(as_on_updates_page)
    context["ready"] = ready
    if not ready.offline_refused:  # without the trusted root the page says why, once
        context |= _download_key(uow, setup, request, current)
    return render_form(request, "updates.html", current, _as_shown_here(error), **(context | shown))


def _as_shown_here(error: ServiceError | None) -> ServiceError | None:
    """The error with its advice pointing to Manual Installation below, not to this page;
    the same kind and record, so the status and the audit entry stay."""
    if error is None or as_on_updates_page(str(error)) == str(error):
        return error
    shown = copy.copy(error)
    shown.args = (as_on_updates_page(str(error)),)
    return shown
