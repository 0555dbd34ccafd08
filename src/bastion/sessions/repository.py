"""Queries on the sessions' tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from bastion.sessions.models import AccountJumpGroup, SessionRow


@dataclass(frozen=True)
class SessionFilter:
    """Every field narrows the list."""

    started_from: datetime | None = None
    started_before: datetime | None = None
    username: str | None = None
    """The representative, exactly (case-insensitively)."""
    jump_client_id: int | None = None
    endpoint: str | None = None
    """Text anywhere in the Jump Client's name or hostname, case-insensitively."""


class SessionRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, row: SessionRow) -> SessionRow:
        self._session.add(row)
        self._session.flush()
        return row

    def get(self, session_id: str) -> SessionRow | None:
        return self._session.get(SessionRow, session_id)

    def page(self, wanted: SessionFilter, limit: int, offset: int) -> list[SessionRow]:
        query = _filtered(select(SessionRow), wanted)
        query = query.order_by(SessionRow.started_at.desc(), SessionRow.id)
        return list(self._session.scalars(query.limit(limit).offset(offset)))

    def count(self, wanted: SessionFilter) -> int:
        return int(self._session.scalar(_filtered(select(func.count(SessionRow.id)), wanted)) or 0)


def _filtered(query: Select[Any], wanted: SessionFilter) -> Select[Any]:
    if wanted.started_from is not None:
        query = query.where(SessionRow.started_at >= wanted.started_from)
    if wanted.started_before is not None:
        query = query.where(SessionRow.started_at < wanted.started_before)
    if wanted.username:
        query = query.where(func.lower(SessionRow.username) == wanted.username.lower())
    if wanted.jump_client_id is not None:
        query = query.where(SessionRow.jump_client_id == wanted.jump_client_id)
    if wanted.endpoint:
        text = wanted.endpoint.lower()
        query = query.where(
            func.lower(SessionRow.jump_client_name).contains(text, autoescape=True)
            | func.lower(SessionRow.jump_client_hostname).contains(text, autoescape=True)
        )
    return query


class JumpGroupGrantRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def of(self, account_id: int) -> list[str]:
        query = select(AccountJumpGroup.jump_group).where(AccountJumpGroup.account_id == account_id)
        return sorted(self._session.scalars(query))

    def replace(self, account_id: int, groups: list[str]) -> None:
        self._session.execute(
            delete(AccountJumpGroup).where(AccountJumpGroup.account_id == account_id)
        )
        self._session.add_all(AccountJumpGroup(account_id=account_id, jump_group=g) for g in groups)
        self._session.flush()
