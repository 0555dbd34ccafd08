"""The audit log page under `/login/audit`."""

from __future__ import annotations

from math import ceil
from typing import Annotated

from fastapi import Query, Request, Response

from bastion.accounts.deps import AdministratorDep
from bastion.platform import audit
from bastion.platform.web.deps import UowDep
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import MAX_ID, PRINTABLE
from bastion.platform.web.templating import render

router = Router(include_in_schema=False)
AUDIT_PAGE_SIZE = 50
MAX_PAGE = MAX_ID // AUDIT_PAGE_SIZE


@router.get("/login/audit")
def audit_log(
    request: Request,
    uow: UowDep,
    current: AdministratorDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    action: Annotated[str | None, Query(max_length=100, pattern=PRINTABLE)] = None,
) -> Response:
    action = (action or "").strip() or None
    offset = (page - 1) * AUDIT_PAGE_SIZE
    entries, total = audit.page(uow, AUDIT_PAGE_SIZE, offset, action)
    pages = max(1, ceil(total / AUDIT_PAGE_SIZE))
    return render(
        request,
        "audit.html",
        current,
        entries=entries,
        total=total,
        page=page,
        pages=pages,
        action=action or "",
    )
