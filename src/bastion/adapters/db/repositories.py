"""Queries, one small class per table; the unit of work hands them to services."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bastion.adapters.db.models import (
    Account,
    ApiClient,
    ApiToken,
    AuditEntry,
    ListenAddressRow,
    Setting,
    SignInFailure,
    WebSession,
)
from bastion.domain.lockout import FailureRecord


class AccountRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, account: Account) -> Account:
        self._session.add(account)
        self._session.flush()
        return account

    def get(self, account_id: int) -> Account | None:
        return self._session.get(Account, account_id)

    def by_username(self, username: str) -> Account | None:
        return self._session.scalars(select(Account).where(Account.username == username)).first()

    def all(self) -> list[Account]:
        return list(self._session.scalars(select(Account).order_by(Account.username)))

    def count_active_administrators(self) -> int:
        query = select(func.count(Account.id)).where(
            Account.role == "administrator", Account.disabled.is_(False)
        )
        return int(self._session.scalar(query) or 0)


class SignInFailureRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, username: str) -> FailureRecord:
        row = self._session.get(SignInFailure, username)
        if row is None:
            return FailureRecord()
        return FailureRecord(row.failures, row.last_failure_at, row.locked_until)

    def save(self, username: str, record: FailureRecord) -> None:
        row = self._session.get(SignInFailure, username) or SignInFailure(username=username)
        row.failures = record.failures
        row.last_failure_at = record.last_failure_at
        row.locked_until = record.locked_until
        self._session.add(row)

    def clear(self, username: str) -> None:
        row = self._session.get(SignInFailure, username)
        if row is not None:
            self._session.delete(row)


class WebSessionRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, web_session: WebSession) -> None:
        self._session.add(web_session)

    def get(self, token_hash: str) -> WebSession | None:
        return self._session.get(WebSession, token_hash)

    def end_for_account(self, account_id: int, now: datetime, reason: str) -> int:
        query = (
            update(WebSession)
            .where(WebSession.account_id == account_id, WebSession.ended_at.is_(None))
            .values(ended_at=now, ended_reason=reason)
        )
        return int(self._session.execute(query).rowcount)  # type: ignore[attr-defined]

    def end_all(self, now: datetime, reason: str) -> int:
        query = (
            update(WebSession)
            .where(WebSession.ended_at.is_(None))
            .values(ended_at=now, ended_reason=reason)
        )
        return int(self._session.execute(query).rowcount)  # type: ignore[attr-defined]

    def count_active(self, seen_after: datetime) -> int:
        query = select(func.count()).where(
            WebSession.ended_at.is_(None), WebSession.last_seen_at >= seen_after
        )
        return int(self._session.scalar(query) or 0)


class ApiClientRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, client: ApiClient) -> ApiClient:
        self._session.add(client)
        self._session.flush()
        return client

    def get(self, api_client_id: int) -> ApiClient | None:
        return self._session.get(ApiClient, api_client_id)

    def by_client_id(self, client_id: str) -> ApiClient | None:
        query = select(ApiClient).where(ApiClient.client_id == client_id)
        return self._session.scalars(query).first()

    def by_name(self, name: str) -> ApiClient | None:
        return self._session.scalars(select(ApiClient).where(ApiClient.name == name)).first()

    def all(self) -> list[ApiClient]:
        return list(self._session.scalars(select(ApiClient).order_by(ApiClient.name)))


class ApiTokenRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, token: ApiToken) -> None:
        self._session.add(token)

    def get(self, token_hash: str) -> ApiToken | None:
        return self._session.get(ApiToken, token_hash)


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
        row = self._session.get(Setting, key)
        return default if row is None else json.loads(row.value)

    def set(self, key: str, value: Any) -> None:
        row = self._session.get(Setting, key) or Setting(key=key)
        row.value = json.dumps(value)
        self._session.add(row)


class ListenAddressRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def all(self) -> list[ListenAddressRow]:
        query = select(ListenAddressRow).order_by(ListenAddressRow.id)
        return list(self._session.scalars(query))

    def get(self, row_id: int) -> ListenAddressRow | None:
        return self._session.get(ListenAddressRow, row_id)

    def find(self, host: str, port: int) -> ListenAddressRow | None:
        query = select(ListenAddressRow).where(
            ListenAddressRow.host == host, ListenAddressRow.port == port
        )
        return self._session.scalars(query).first()

    def add(self, row: ListenAddressRow) -> ListenAddressRow:
        self._session.add(row)
        self._session.flush()
        return row
