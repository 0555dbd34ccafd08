"""Sign-in for people (web sessions) and for API clients (bearer tokens)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import anyio.to_thread
from sqlalchemy import Connection

from bastion.accounts import repository
from bastion.accounts.models import Account, WebSession
from bastion.accounts.passwords import PasswordChecks
from bastion.accounts.repository import (
    AccountRepository,
    SignInFailureRepository,
    WebSessionRepository,
)
from bastion.accounts.rules import LockoutPolicy, assess
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import AuthenticationError, SessionEndedError, ThrottledError
from bastion.platform.principals import Actor, Principal, Role
from bastion.platform.unit_of_work import UnitOfWork

WRONG_CREDENTIALS = "The username or password is wrong."
WEB = "web"
CONSOLE = "console"
"""The kinds of signed-in session: a browser's cookie, the access console's bearer token."""
DISABLED = "This account is disabled; ask an administrator."
UnitsOfWork = Callable[[], UnitOfWork]
T = TypeVar("T")


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


@dataclass(frozen=True)
class Holder:
    """What signing in needs to know of an account, read before its password is checked."""

    account_id: int
    username: str
    role: Role
    password_hash: str
    disabled: bool
    must_change_password: bool

    @property
    def principal(self) -> Principal:
        return Principal(self.username, self.role, account_id=self.account_id)


@dataclass(frozen=True)
class Attempt:
    """A sign-in attempt, already counted as a failure until its password proves right."""

    name: str
    failures: int
    holder: Holder | None


def principal_of(account: Account) -> Principal:
    return Principal(account.username, Role(account.role), account_id=account.id)


def attempt_key(username: str) -> str:
    """The name failures are counted under: known or not, so that answers reveal nothing."""
    return username.strip().lower().replace("\x00", "")[:256]


async def sign_in(
    units: UnitsOfWork,
    checks: PasswordChecks,
    policy: LockoutPolicy,
    username: str,
    password: str,
    source: str,
    kind: str = WEB,
) -> SignedIn:
    """Check the password under the lockout rules and open a session of `kind` (a web
    session, or the access console's).

    This use case commits on its own, twice: the attempt is counted and committed before
    the password is checked (so that concurrent attempts see each other and the lock
    holds for the right password too), and the check runs with no transaction open.
    """
    async with checks.admitted():
        attempt = await _in_unit(units, reserve_attempt, policy, username)
        holder = attempt.holder
        valid = await checks.check(holder.password_hash if holder else None, password)
        return await _in_unit(units, conclude_attempt, attempt, valid, source, kind)


async def _in_unit(units: UnitsOfWork, step: Callable[..., T], *args: object) -> T:
    """Run one step in its own unit of work on a worker thread, and commit it."""

    def run() -> T:
        with units() as uow:
            result = step(uow, *args)
            uow.commit()
            return result

    return await anyio.to_thread.run_sync(run)


def reserve_attempt(
    uow: UnitOfWork, policy: LockoutPolicy, username: str, now: datetime | None = None
) -> Attempt:
    """Count the attempt if the lockout allows one now (first, so that SQLite takes its
    write lock before reading), then read the account it is for. The time is read here,
    just before counting, so that concurrent attempts are stamped in the order counted."""
    now = now or utc_now()
    name = attempt_key(username)
    failures = uow.repository(SignInFailureRepository)
    record = failures.reserve(name, policy, now)
    if record is None:
        verdict = assess(policy, failures.get(name), now)
        message = (
            verdict.message() or "Too many failed sign-ins. Wait 1 second(s) before trying again."
        )
        raise ThrottledError(message, max(1.0, verdict.wait_seconds))
    account = uow.repository(AccountRepository).by_username(name)
    return Attempt(name, record.failures, _holder(account) if account else None)


def _holder(account: Account) -> Holder:
    return Holder(
        account.id,
        account.username,
        Role(account.role),
        account.password_hash,
        account.disabled,
        account.must_change_password,
    )


def conclude_attempt(
    uow: UnitOfWork, attempt: Attempt, valid: bool, source: str, kind: str = WEB
) -> SignedIn:
    """A right password for an enabled account clears the failures and opens a session;
    anything else stays counted and is in the audit log."""
    holder = attempt.holder
    if holder is None or not valid or holder.disabled:
        disabled = holder is not None and valid
        reason = "account disabled" if disabled else "wrong username or password"
        actor = Actor(None, source)
        audit.record(
            uow, actor, "sign_in.failure", attempt.name, reason=reason, failures=attempt.failures
        )
        raise AuthenticationError(DISABLED if disabled else WRONG_CREDENTIALS, recorded=True)
    uow.repository(SignInFailureRepository).clear(attempt.name)
    return _open_session(uow, holder, source, utc_now(), kind)


def _open_session(
    uow: UnitOfWork, holder: Holder, source: str, now: datetime, kind: str
) -> SignedIn:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    uow.repository(WebSessionRepository).add(
        WebSession(
            token_hash=token_digest(token),
            account_id=holder.account_id,
            csrf_token=csrf,
            source=source,
            created_at=now,
            last_seen_at=now,
            kind=kind,
        )
    )
    principal = holder.principal
    extra = {} if kind == WEB else {"kind": kind}
    audit.record(uow, Actor(principal, source), "sign_in.success", holder.username, **extra)
    return SignedIn(token, csrf, principal, holder.must_change_password)


@dataclass(frozen=True)
class CurrentSession:
    principal: Principal
    csrf_token: str
    must_change_password: bool
    token_hash: str


def resolve_session(
    uow: UnitOfWork, token: str, limits: SessionLimits, kind: str = WEB
) -> CurrentSession:
    """The session behind a cookie (or the console's token), or why there is none any more."""
    now = utc_now()
    row = uow.repository(WebSessionRepository).get(token_digest(token))
    if row is None or row.kind != kind:
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


def sign_out(uow: UnitOfWork, token: str, source: str, kind: str = WEB) -> None:
    row = uow.repository(WebSessionRepository).get(token_digest(token))
    if row is None or row.ended_at is not None or row.kind != kind:
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
