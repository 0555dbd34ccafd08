"""`/login > Management > Security`: the inter-appliance key of a failover pair."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from bastion.accounts.deps import AdministratorDep, CsrfDep, page_actor
from bastion.accounts.sign_in import CurrentSession
from bastion.failover import service as failover
from bastion.failover.api import FailoverDep
from bastion.failover.service import FailoverSetup
from bastion.platform.errors import InvalidInputError, ServiceError
from bastion.platform.web.deps import UowDep
from bastion.platform.web.forms import reloads_go_to
from bastion.platform.web.templating import render_form

router = APIRouter(include_in_schema=False)
SECURITY = "/login/management/security"


def _page(
    request: Request,
    setup: FailoverSetup,
    current: CurrentSession | None,
    error: ServiceError | None = None,
    notice: str | None = None,
) -> Response:
    return render_form(
        request,
        "security.html",
        current,
        error,
        notice=notice,
        key_set=setup.keys.path.exists(),
        pair=setup.pair(),
    )


@router.get(SECURITY)
def security(request: Request, setup: FailoverDep, current: AdministratorDep) -> Response:
    return _page(request, setup, current)


@router.post(f"{SECURITY}/key", dependencies=[CsrfDep])
def set_key(
    request: Request,
    setup: FailoverDep,
    uow: UowDep,
    current: AdministratorDep,
    key: Annotated[str, Form(max_length=4096)] = "",
    confirm_key: Annotated[str, Form(max_length=4096)] = "",
) -> Response:
    try:
        if key != confirm_key:
            raise InvalidInputError("The two keys differ; type the same key twice.")
        failover.set_key(uow, setup, page_actor(request, current), key)
    except ServiceError as error:
        return _page(request, setup, current, error)
    uow.commit()
    return _page(request, setup, current, notice="The inter-appliance key is set.")


reloads_go_to(router, SECURITY, f"{SECURITY}/key")
