"""The audit log in the JSON API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from bastion.accounts.deps import ApiActorDep
from bastion.audit import schemas as s
from bastion.platform import audit
from bastion.platform.web.deps import UowDep

router = APIRouter(prefix="/api/v1", tags=["appliance"])


@router.get("/audit", response_model=s.AuditPage)
def audit_log(
    uow: UowDep,
    actor: ApiActorDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    action: str | None = None,
) -> s.AuditPage:
    entries, total = audit.page(uow, limit, offset, action)
    return s.AuditPage(total=total, entries=[s.AuditOut.model_validate(e) for e in entries])
