"""Queries on the platform's own tables: the audit log and the settings."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bastion.platform.db.models import AuditEntry, Setting


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, entry: AuditEntry) -> None:
        self._session.add(entry)

    def page(self, limit: int, offset: int, action: str | None = None) -> list[AuditEntry]:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
        if action:
            query = query.where(AuditEntry.action == action)
        return list(self._session.scalars(query))

    def count(self, action: str | None = None) -> int:
        query = select(func.count(AuditEntry.id))
        if action:
            query = query.where(AuditEntry.action == action)
        return int(self._session.scalar(query) or 0)


class SettingsRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, key: str, default: Any = None) -> Any:
        row = self._session.get(Setting, key, populate_existing=True)
        return default if row is None else json.loads(row.value)

    def set(self, key: str, value: Any) -> None:
        """Insert or replace in one statement: two requests setting a key that is not
        stored yet both succeed (the later one wins) instead of one failing on the key."""
        text = json.dumps(value)
        dialect = self._session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        upsert = insert(Setting).values(key=key, value=text)
        self._session.execute(
            upsert.on_conflict_do_update(index_elements=[Setting.key], set_={"value": text})
        )
