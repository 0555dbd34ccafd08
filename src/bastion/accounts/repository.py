"""Queries on the accounts' tables, one small class per table."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bastion.accounts.models import Account, ApiClient, ApiToken, SignInFailure, WebSession
from bastion.accounts.rules import FailureRecord, LockoutPolicy, delay_steps
from bastion.platform.db.models import UTCDateTime


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
    """Failed sign-ins per username. An attempt is counted before its password is checked,
    in one statement (:meth:`reserve`), so that concurrent attempts each see the others."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, username: str) -> FailureRecord:
        row = self._session.get(SignInFailure, username)
        if row is None:
            return FailureRecord()
        return FailureRecord(row.failures, row.last_failure_at, row.locked_until)

    def reserve(self, username: str, policy: LockoutPolicy, now: datetime) -> FailureRecord | None:
        """Count one attempt at `now` if the lockout allows one, and return the new record;
        None when it does not (nothing is counted).

        One `INSERT … ON CONFLICT … DO UPDATE … WHERE … RETURNING` (SQLite and PostgreSQL
        alike): the database checks and counts under its own row lock, so N concurrent
        attempts count N, and those beyond the limit are refused. It follows
        :func:`assess` and :func:`record_failure` exactly (tests compare them).
        """
        table = cast(Table, SignInFailure.__table__)
        counted = _counted_after()
        values = {
            "username": username,
            "failures": 1,
            "last_failure_at": now,
            "locked_until": _lock_end(policy, now) if policy.lock_after <= 1 else None,
        }
        statement = (
            _upsert(self._session)(table)
            .values(**values)
            .on_conflict_do_update(
                index_elements=[table.c.username],
                set_={
                    "failures": counted,
                    "last_failure_at": case(
                        (SignInFailure.last_failure_at > _at(now), SignInFailure.last_failure_at),
                        else_=_at(now),
                    ),
                    "locked_until": case(
                        (counted >= policy.lock_after, _at(_lock_end(policy, now))),
                        else_=null(),
                    ),
                },
                where=_allowed(policy, now),
            )
            .returning(table.c.failures, table.c.last_failure_at, table.c.locked_until)
        )
        row = self._session.execute(statement).first()
        if row is None:
            return None
        return FailureRecord(row.failures, row.last_failure_at, row.locked_until)

    def clear(self, username: str) -> None:
        self._session.execute(delete(SignInFailure).where(SignInFailure.username == username))


def _upsert(session: Session) -> Callable[[Table], Any]:
    """The dialect's INSERT with ON CONFLICT (SQLite and PostgreSQL share its form)."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _at(moment: datetime) -> ColumnElement[datetime]:
    return literal(moment, UTCDateTime())


def _lock_end(policy: LockoutPolicy, now: datetime) -> datetime:
    return now + timedelta(seconds=policy.lock_seconds)


def _counted_after() -> ColumnElement[int]:
    """The failures once this attempt is counted: a lock that has run out starts afresh."""
    return case((SignInFailure.locked_until.is_not(None), 1), else_=SignInFailure.failures + 1)


def _allowed(policy: LockoutPolicy, now: datetime) -> ColumnElement[bool]:
    """:func:`assess` in SQL: not locked, and the wait after the last failure is over."""
    not_locked = or_(SignInFailure.locked_until.is_(None), SignInFailure.locked_until <= _at(now))
    steps = delay_steps(policy)
    if not steps:
        return not_locked
    # Failures below the first step wait nothing, whatever the clock of a concurrent attempt
    # that was counted a moment earlier says.
    waits = [(SignInFailure.failures >= n, _at(now - timedelta(seconds=s))) for n, s in steps]
    waited = or_(
        SignInFailure.failures < steps[-1][0],
        SignInFailure.last_failure_at.is_(None),
        SignInFailure.last_failure_at <= case(*waits, else_=_at(now)),
    )
    return and_(not_locked, waited)


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


class Bearer(NamedTuple):
    """What a bearer token stands for: when it expires, and its API client."""

    expires_at: datetime
    client_id: int
    client_name: str
    client_revoked_at: datetime | None


_BEARER = (
    select(ApiToken.expires_at, ApiClient.id, ApiClient.name, ApiClient.revoked_at)
    .join(ApiClient, ApiClient.id == ApiToken.api_client_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)


class ApiTokenRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, token: ApiToken) -> None:
        self._session.add(token)

    def bearer(self, token_hash: str) -> Bearer | None:
        """The token and its client in one read of the columns asked, without loading
        objects: every API request asks it first."""
        found = self._session.connection().execute(_BEARER, {"token_hash": token_hash}).first()
        return None if found is None else Bearer(*found)


def end_all_sessions_on(connection: Connection) -> int:
    """End every web session and API token inside a transaction held on `connection`;
    returns how many web sessions there were."""
    ended = connection.execute(delete(WebSession)).rowcount
    connection.execute(delete(ApiToken))
    return int(ended or 0)
