"""Queries on the accounts' tables, one small class per table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.orm import Session

from bastion.accounts.models import Account, ApiClient, ApiToken, SignInFailure, WebSession
from bastion.accounts.rules import FailureRecord


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


def end_all_sessions_on(connection: Connection) -> int:
    """End every web session and API token inside a transaction held on `connection`;
    returns how many web sessions there were."""
    ended = connection.execute(delete(WebSession)).rowcount
    connection.execute(delete(ApiToken))
    return int(ended or 0)
