"""Queries on the Jump Clients' tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
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


@dataclass(frozen=True)
class Behind:
    """A live client of an older version than the site's, as the rollout sees it."""

    row_id: int
    client_id: str
    online: bool
    first: bool
    upgrade_state: str
    upgrade_version: str


class UpgradeRepository:
    """The rollout's queries: a few columns of many rows, and updates by statement."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def behind(self, site_version: str) -> list[Behind]:
        query = select(
            JumpClientRow.id,
            JumpClientRow.client_id,
            JumpClientRow.online,
            JumpClientRow.upgrade_first,
            JumpClientRow.upgrade_state,
            JumpClientRow.upgrade_version,
        ).where(JumpClientRow.version != site_version, *_live())
        return [Behind(*row) for row in self._session.execute(query)]

    def upgrading(self, site_version: str) -> int:
        """How many live clients behind `site_version` are upgrading now."""
        query = select(func.count(JumpClientRow.id)).where(
            JumpClientRow.version != site_version,
            JumpClientRow.upgrade_state == "upgrading",
            *_live(),
        )
        return int(self._session.scalar(query) or 0)

    def start(self, row_ids: list[int], version: str, now: datetime) -> None:
        self._session.execute(
            update(JumpClientRow)
            .where(JumpClientRow.id.in_(row_ids))
            .values(
                upgrade_state="upgrading",
                upgrade_version=version,
                upgrade_started_at=now,
                upgrade_finished_at=None,
                upgrade_detail="",
                upgrade_first=False,
            )
        )

    def unstart(self, row_ids: list[int]) -> None:
        query = (
            update(JumpClientRow)
            .where(JumpClientRow.id.in_(row_ids), JumpClientRow.upgrade_state == "upgrading")
            .values(upgrade_state="", upgrade_started_at=None)
        )
        self._session.execute(query)

    def time_out(self, started_before: datetime, now: datetime, detail: str) -> int:
        query = (
            update(JumpClientRow)
            .where(
                JumpClientRow.upgrade_state == "upgrading",
                JumpClientRow.upgrade_started_at < started_before,
            )
            .values(upgrade_state="failed", upgrade_finished_at=now, upgrade_detail=detail)
        )
        return int(self._session.execute(query).rowcount)  # type: ignore[attr-defined]

    def fail(self, client_id: str, now: datetime, detail: str) -> int:
        """The upgrade of `client_id` in progress has failed; 0 if none was."""
        query = (
            update(JumpClientRow)
            .where(JumpClientRow.client_id == client_id, JumpClientRow.upgrade_state == "upgrading")
            .values(upgrade_state="failed", upgrade_finished_at=now, upgrade_detail=detail)
        )
        return int(self._session.execute(query).rowcount)  # type: ignore[attr-defined]

    def retry_failed(self, version: str) -> int:
        query = (
            update(JumpClientRow)
            .where(
                JumpClientRow.upgrade_state == "failed", JumpClientRow.upgrade_version == version
            )
            .values(upgrade_state="", upgrade_detail="")
        )
        return int(self._session.execute(query).rowcount)  # type: ignore[attr-defined]

    def recent_outcomes(self, version: str, limit: int) -> list[bool]:
        """True for each upgraded, False for each failed, oldest first."""
        query = (
            select(JumpClientRow.upgrade_state)
            .where(
                JumpClientRow.upgrade_version == version,
                JumpClientRow.upgrade_state.in_(("done", "failed")),
                *_live(),
            )
            .order_by(JumpClientRow.upgrade_finished_at.desc())
            .limit(limit)
        )
        return [state == "done" for state in reversed(list(self._session.scalars(query)))]

    def live_anchors(self) -> list[str]:
        """The anchors each live client reported (a JSON list each)."""
        return list(self._session.scalars(select(JumpClientRow.anchors).where(*_live())))

    def live_count(self) -> int:
        return int(self._session.scalar(select(func.count(JumpClientRow.id)).where(*_live())) or 0)

    def tally(self, site_version: str) -> list[tuple[bool, str, bool, int]]:
        """(up to date, upgrade state, online, how many) over the live fleet."""
        current = JumpClientRow.version == site_version
        query = (
            select(current, JumpClientRow.upgrade_state, JumpClientRow.online, func.count())
            .where(*_live())
            .group_by(current, JumpClientRow.upgrade_state, JumpClientRow.online)
        )
        return [(bool(a), str(b), bool(c), int(d)) for a, b, c, d in self._session.execute(query)]


def _live() -> tuple[Any, ...]:
    return (JumpClientRow.revoked_at.is_(None), JumpClientRow.uninstall_requested_at.is_(None))
