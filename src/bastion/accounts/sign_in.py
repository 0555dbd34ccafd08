"""Sign-in for people (web sessions) and for API clients (bearer tokens)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from bastion.accounts import repository
from bastion.accounts.models import Account, WebSession
from bastion.accounts.repository import (
    AccountRepository,
    SignInFailureRepository,
    WebSessionRepository,
)
from bastion.accounts.rules import Hasher, LockoutPolicy, assess, record_failure
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import AuthenticationError, SessionEndedError, ThrottledError
from bastion.platform.principals import Actor, Principal, Role
from bastion.platform.unit_of_work import UnitOfWork

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
    verdict = assess(policy, uow.repository(SignInFailureRepository).get(name), now)
    if not verdict.allowed:
        raise ThrottledError(verdict.message(), verdict.wait_seconds)
    account = uow.repository(AccountRepository).by_username(name)
    valid = hasher.verify(account.password_hash if account else _dummy_hash(hasher), password)
    if account is None or not valid or account.disabled:
        _fail(uow, policy, name, source, now, disabled=bool(account and valid))
        raise AuthenticationError(
            "This account is disabled; ask an administrator."
            if account and valid
            else WRONG_CREDENTIALS,
            recorded=True,
        )
    uow.repository(SignInFailureRepository).clear(name)
    return _open_session(uow, account, source, now)


_dummy: dict[int, str] = {}


def _dummy_hash(hasher: Hasher) -> str:
    return _dummy.setdefault(id(hasher), hasher.hash(_DUMMY_SECRET))


def _fail(
    uow: UnitOfWork, policy: LockoutPolicy, name: str, source: str, now: datetime, disabled: bool
) -> None:
    record = record_failure(policy, uow.repository(SignInFailureRepository).get(name), now)
    uow.repository(SignInFailureRepository).save(name, record)
    reason = "account disabled" if disabled else "wrong username or password"
    audit.record(
        uow, Actor(None, source), "sign_in.failure", name, reason=reason, failures=record.failures
    )


def _open_session(uow: UnitOfWork, account: Account, source: str, now: datetime) -> SignedIn:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    uow.repository(WebSessionRepository).add(
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
    row = uow.repository(WebSessionRepository).get(token_digest(token))
    if row is None:
        raise AuthenticationError("Please sign in.")
    if row.ended_at is not None:
        raise SessionEndedError(
            f"Your session was ended ({row.ended_reason}). Please sign in again."
        )
    expired = now - row.last_seen_at > limits.idle or now - row.created_at > limits.maximum
    account = uow.repository(AccountRepository).get(row.account_id)
    if expired or account is None or account.disabled:
        row.ended_at, row.ended_reason = now, "expired" if expired else "account disabled"
        raise SessionEndedError(
            f"Your session has {row.ended_reason}. Please sign in again.", recorded=True
        )
    if now - row.last_seen_at > timedelta(seconds=30):
        row.last_seen_at = now  # committed by the request that resolved the session
    principal = principal_of(account)
    return CurrentSession(principal, row.csrf_token, account.must_change_password, row.token_hash)


def sign_out(uow: UnitOfWork, token: str, source: str) -> None:
    row = uow.repository(WebSessionRepository).get(token_digest(token))
    if row is None or row.ended_at is not None:
        return
    row.ended_at, row.ended_reason = utc_now(), "signed out"
    account = uow.repository(AccountRepository).get(row.account_id)
    actor = Actor(principal_of(account) if account else None, source)
    audit.record(uow, actor, "sign_out", account.username if account else "?")


def active_session_count(uow: UnitOfWork, limits: SessionLimits) -> int:
    return uow.repository(WebSessionRepository).count_active(utc_now() - limits.idle)


UPDATE_SIGN_OUT = "the appliance was updated to"
"""How sessions ended at an install's switch are marked, so the sign-in page can say so."""
LAST_UPDATE_SIGN_OUT = "updates.last_switch"


def end_sessions_for_update(uow: UnitOfWork, release: str, actor: Actor) -> int:
    """At an install's switch every signed-in user is signed out, told why on the next
    request (R5)."""
    now = utc_now()
    reason = f"{UPDATE_SIGN_OUT} {release}"
    ended = uow.repository(WebSessionRepository).end_all(now, reason)
    uow.settings.set(LAST_UPDATE_SIGN_OUT, {"release": release, "at": now.isoformat()})
    audit.record(uow, actor, "updates.install.sessions_ended", release, sessions_ended=ended)
    return ended


def recent_update_sign_out(uow: UnitOfWork, within: timedelta) -> str | None:
    """ "site 1.1 at 12:00 UTC" if an install signed everyone out within `within`."""
    stored = uow.settings.get(LAST_UPDATE_SIGN_OUT)
    if not isinstance(stored, dict):
        return None
    at = datetime.fromisoformat(str(stored["at"]))
    if utc_now() - at > within:
        return None
    return f"{stored['release']} at {at:%H:%M} UTC"


def end_all_sessions_on(connection: Connection) -> int:
    """A restore replaced the site: every web session and API token ends (inside the
    restore's transaction on `connection`); returns how many web sessions there were."""
    return repository.end_all_sessions_on(connection)
