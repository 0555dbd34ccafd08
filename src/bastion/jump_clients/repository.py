"""Queries on the Jump Clients' tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from bastion.jump_clients.models import InstallerRow, JumpClientRow


class InstallerRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, row: InstallerRow) -> InstallerRow:
        self._session.add(row)
        self._session.flush()
        return row

    def get(self, row_id: int) -> InstallerRow | None:
        return self._session.get(InstallerRow, row_id)

    def by_token_hash(self, token_hash: str) -> InstallerRow | None:
        query = select(InstallerRow).where(InstallerRow.token_hash == token_hash)
        return self._session.scalars(query).first()

    def all(self) -> list[InstallerRow]:
        query = select(InstallerRow).order_by(InstallerRow.id.desc())
        return list(self._session.scalars(query))


@dataclass(frozen=True)
class ClientFilter:
    """Every field narrows the list; text matches anywhere, case-insensitively."""

    name: str | None = None
    hostname: str | None = None
    tag: str | None = None
    jump_group: str | None = None
    mode: str | None = None
    version: str | None = None
    status: str | None = None
    """Worked out from several columns, so filtered by the service, not here."""


_TEXT_COLUMNS = {
    "name": JumpClientRow.name,
    "hostname": JumpClientRow.hostname,
    "tag": JumpClientRow.tag,
    "jump_group": JumpClientRow.jump_group,
}


class JumpClientRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, row: JumpClientRow) -> JumpClientRow:
        self._session.add(row)
        self._session.flush()
        return row

    def get(self, row_id: int) -> JumpClientRow | None:
        return self._session.get(JumpClientRow, row_id)

    def by_client_id(self, client_id: str) -> JumpClientRow | None:
        query = select(JumpClientRow).where(JumpClientRow.client_id == client_id)
        return self._session.scalars(query).first()

    def page(self, wanted: ClientFilter, limit: int | None, offset: int) -> list[JumpClientRow]:
        query = _filtered(select(JumpClientRow), wanted)
        query = query.order_by(JumpClientRow.name, JumpClientRow.id).offset(offset)
        return list(self._session.scalars(query if limit is None else query.limit(limit)))

    def count(self, wanted: ClientFilter) -> int:
        query = _filtered(select(func.count(JumpClientRow.id)), wanted)
        return int(self._session.scalar(query) or 0)

    def sharing_an_endpoint(self) -> list[list[JumpClientRow]]:
        shared = (
            select(JumpClientRow.endpoint)
            .group_by(JumpClientRow.endpoint)
            .having(func.count(JumpClientRow.id) > 1)
        )
        query = (
            select(JumpClientRow)
            .where(JumpClientRow.endpoint.in_(shared))
            .order_by(JumpClientRow.endpoint, JumpClientRow.installed_at)
        )
        groups: dict[str, list[JumpClientRow]] = {}
        for row in self._session.scalars(query):
            groups.setdefault(row.endpoint, []).append(row)
        return list(groups.values())


def _filtered(query: Select[Any], wanted: ClientFilter) -> Select[Any]:
    for field, column in _TEXT_COLUMNS.items():
        text = getattr(wanted, field)
        if text:
            query = query.where(func.lower(column).contains(text.lower(), autoescape=True))
    if wanted.mode:
        query = query.where(JumpClientRow.mode == wanted.mode)
    if wanted.version:
        query = query.where(JumpClientRow.version == wanted.version)
    return query
