"""The audit log: who did what, to what, when and from where."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from bastion.platform.clock import utc_now
from bastion.platform.db.engine import add_on
from bastion.platform.db.models import AuditEntry
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork


def new_entry(actor: Actor, action: str, target: str, **details: Any) -> AuditEntry:
    return AuditEntry(
        at=utc_now(),
        actor=_fit(actor.name, AuditEntry.actor),
        action=action,
        target=_fit(target, AuditEntry.target),
        details=json.dumps(details, sort_keys=True, default=str),
        source=_fit(actor.source, AuditEntry.source),
    )


def _fit(text: str, column: Any) -> str:
    """What a caller named (a username typed at sign-in, say) as the column can hold it:
    cut to its length, without NUL characters, which PostgreSQL refuses in text."""
    return text.replace("\x00", "")[: column.type.length]


def record(uow: UnitOfWork, actor: Actor, action: str, target: str, **details: Any) -> None:
    """Add an entry in the caller's transaction: it commits or rolls back with the change."""
    uow.audit.add(new_entry(actor, action, target, **details))


def record_on(
    connection: Connection, actor: Actor, action: str, target: str, **details: Any
) -> None:
    """Add an entry inside a transaction held on `connection` (a restore, a factory reset)."""
    add_on(connection, new_entry(actor, action, target, **details))


@dataclass(frozen=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    source: str


def page(
    uow: UnitOfWork, limit: int = 50, offset: int = 0, action: str | None = None
) -> tuple[list[AuditView], int]:
    limit = max(1, min(limit, 500))
    entries = uow.audit.page(limit, max(0, offset), action)
    views = [
        AuditView(e.id, e.at, e.actor, e.action, e.target, json.loads(e.details), e.source)
        for e in entries
    ]
    return views, uow.audit.count(action)
