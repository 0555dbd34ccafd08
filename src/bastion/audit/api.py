"""The audit log in the JSON API."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from bastion.accounts.deps import ApiActorDep
from bastion.audit import schemas as s
from bastion.platform import audit
from bastion.platform.web.deps import UowDep
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import MAX_ID, PRINTABLE

router = Router(prefix="/api/v1", tags=["appliance"])


@router.get("/audit", response_model=s.AuditPage)
def audit_log(
    uow: UowDep,
    actor: ApiActorDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Entries per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="Entries to skip")] = 0,
    action: Annotated[
        str | None,
        Query(max_length=100, pattern=PRINTABLE, description="Only entries of this action"),
    ] = None,
) -> s.AuditPage:
    """The audit log, newest first."""
    entries, total = audit.page(uow, limit, offset, action)
    return s.AuditPage(total=total, entries=[s.AuditOut.model_validate(e) for e in entries])
