"""Sign-in for people (web sessions) and for API clients (bearer tokens)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.adapters.db.models import Account, WebSession
from bastion.domain.accounts import Principal, Role
from bastion.domain.lockout import LockoutPolicy, assess, record_failure
from bastion.services import audit
from bastion.services.audit import Actor
from bastion.services.errors import AuthenticationError, SessionEndedError, ThrottledError
from bastion.services.ports import Hasher, utc_now
from bastion.services.unit_of_work import UnitOfWork

WRONG_CREDENTIALS = "The username or password is wrong."
# Verified against when the account does not exist, so both answers take as long.
_DUMMY_SECRET = "not-a-real-account-secret"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SessionLimits:
    idle: timedelta
    maximum: timedelta


@dataclass(frozen=True)
class SignedIn:
    token: str
    csrf_token: str
    principal: Principal
    must_change_password: bool


def principal_of(account: Account) -> Principal:
    return Principal(account.username, Role(account.role), account_id=account.id)


def sign_in(
    uow: UnitOfWork,
    hasher: Hasher,
    policy: LockoutPolicy,
    username: str,
    password: str,
    source: str,
) -> SignedIn:
    """Check the password under the lockout rules and open a web session."""
    name = username.strip().lower()[:256]
    now = utc_now()
    verdict = assess(policy, uow.sign_in_failures.get(name), now)
    if not verdict.allowed:
        raise ThrottledError(verdict.message(), verdict.wait_seconds)
    account = uow.accounts.by_username(name)
    valid = hasher.verify(account.password_hash if account else _dummy_hash(hasher), password)
    if account is None or not valid or account.disabled:
        _fail(uow, policy, name, source, now, disabled=bool(account and valid))
        raise AuthenticationError(
            "This account is disabled; ask an administrator."
            if account and valid
            else WRONG_CREDENTIALS
        )
    uow.sign_in_failures.clear(name)
    return _open_session(uow, account, source, now)


_dummy: dict[int, str] = {}


def _dummy_hash(hasher: Hasher) -> str:
    return _dummy.setdefault(id(hasher), hasher.hash(_DUMMY_SECRET))


def _fail(
    uow: UnitOfWork, policy: LockoutPolicy, name: str, source: str, now: datetime, disabled: bool
) -> None:
    record = record_failure(policy, uow.sign_in_failures.get(name), now)
    uow.sign_in_failures.save(name, record)
    reason = "account disabled" if disabled else "wrong username or password"
    audit.record(
        uow, Actor(None, source), "sign_in.failure", name, reason=reason, failures=record.failures
    )
    uow.commit()


def _open_session(uow: UnitOfWork, account: Account, source: str, now: datetime) -> SignedIn:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    uow.web_sessions.add(
        WebSession(
            token_hash=token_digest(token),
            account_id=account.id,
            csrf_token=csrf,
            source=source,
            created_at=now,
            last_seen_at=now,
        )
    )
    principal = principal_of(account)
    audit.record(uow, Actor(principal, source), "sign_in.success", account.username)
    return SignedIn(token, csrf, principal, account.must_change_password)


@dataclass(frozen=True)
class CurrentSession:
    principal: Principal
    csrf_token: str
    must_change_password: bool
    token_hash: str


def resolve_session(uow: UnitOfWork, token: str, limits: SessionLimits) -> CurrentSession:
    """The session behind a cookie, or why there is none any more."""
    now = utc_now()
    row = uow.web_sessions.get(token_digest(token))
    if row is None:
        raise AuthenticationError("Please sign in.")
    if row.ended_at is not None:
        raise SessionEndedError(
            f"Your session was ended ({row.ended_reason}). Please sign in again."
        )
    expired = now - row.last_seen_at > limits.idle or now - row.created_at > limits.maximum
    account = uow.accounts.get(row.account_id)
    if expired or account is None or account.disabled:
        row.ended_at, row.ended_reason = now, "expired" if expired else "account disabled"
        uow.commit()
        raise SessionEndedError(f"Your session has {row.ended_reason}. Please sign in again.")
    if now - row.last_seen_at > timedelta(seconds=30):
        row.last_seen_at = now
        uow.commit()
    principal = principal_of(account)
    return CurrentSession(principal, row.csrf_token, account.must_change_password, row.token_hash)


def sign_out(uow: UnitOfWork, token: str, source: str) -> None:
    row = uow.web_sessions.get(token_digest(token))
    if row is None or row.ended_at is not None:
        return
    row.ended_at, row.ended_reason = utc_now(), "signed out"
    account = uow.accounts.get(row.account_id)
    actor = Actor(principal_of(account) if account else None, source)
    audit.record(uow, actor, "sign_out", account.username if account else "?")


def active_session_count(uow: UnitOfWork, limits: SessionLimits) -> int:
    return uow.web_sessions.count_active(utc_now() - limits.idle)
