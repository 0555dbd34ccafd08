"""Accounts: create, edit, disable, change password; the last administrator stays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import Connection

from bastion.accounts.models import Account
from bastion.accounts.passwords import Argon2Hasher, PasswordChecks
from bastion.accounts.repository import AccountRepository, WebSessionRepository
from bastion.accounts.rules import (
    FIRST_LOGIN_PASSWORD,
    FIRST_LOGIN_USERNAME,
    AccountError,
    Hasher,
    LockoutPolicy,
    check_password,
    password_problems,
    validate_username,
)
from bastion.accounts.sign_in import SessionLimits
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.db.engine import add_on
from bastion.platform.errors import ConflictError, InvalidInputError, NotFoundError
from bastion.platform.principals import Actor, Role
from bastion.platform.settings import ApplianceSettings
from bastion.platform.text import clean_name
from bastion.platform.unit_of_work import UnitOfWork

MAX_DISPLAY_NAME_LENGTH = 200


@dataclass(frozen=True)
class AccountsSetup:
    """How this appliance checks passwords and secrets, throttles sign-ins and ends sessions."""

    hasher: PasswordChecks
    """Every hash and check of a password or secret, bounded (see `PasswordChecks`)."""
    lockout: LockoutPolicy
    session_limits: SessionLimits
    api_token_ttl: timedelta

    @classmethod
    def from_settings(cls, settings: ApplianceSettings) -> AccountsSetup:
        s = settings
        return cls(
            hasher=PasswordChecks(
                Argon2Hasher(fast=s.password_hash_fast),
                at_once=s.password_checks_at_once,
                waiting=s.password_checks_waiting,
            ),
            lockout=LockoutPolicy(
                free_attempts=s.lockout_free_attempts,
                base_delay=s.lockout_base_delay_seconds,
                max_delay=s.lockout_max_delay_seconds,
                lock_after=s.lockout_lock_after,
                lock_seconds=s.lockout_lock_seconds,
            ),
            session_limits=SessionLimits(
                idle=timedelta(minutes=s.session_idle_minutes),
                maximum=timedelta(hours=s.session_max_hours),
            ),
            api_token_ttl=timedelta(seconds=s.api_token_ttl_seconds),
        )


@dataclass(frozen=True)
class AccountView:
    id: int
    username: str
    display_name: str
    role: Role
    disabled: bool
    must_change_password: bool
    created_at: datetime


def view(account: Account) -> AccountView:
    return AccountView(
        account.id,
        account.username,
        account.display_name,
        Role(account.role),
        account.disabled,
        account.must_change_password,
        account.created_at,
    )


def first_login_account(hasher: Hasher) -> Account:
    """The factory account: `admin`/`password`, to be changed at the first sign-in (R39)."""
    return Account(
        username=FIRST_LOGIN_USERNAME,
        display_name="Administrator",
        role=Role.ADMINISTRATOR.value,
        password_hash=hasher.hash(FIRST_LOGIN_PASSWORD),
        must_change_password=True,
        disabled=False,
        created_at=utc_now(),
    )


def ensure_first_login(uow: UnitOfWork, hasher: Hasher) -> None:
    """On a new site: the factory account, unless an account of its name exists."""
    if uow.repository(AccountRepository).by_username(FIRST_LOGIN_USERNAME) is None:
        uow.repository(AccountRepository).add(first_login_account(hasher))


def add_first_login_on(connection: Connection, hasher: Hasher) -> None:
    """The factory account, inside a transaction held on `connection` (a factory reset)."""
    add_on(connection, first_login_account(hasher))


def _display_name(text: str) -> str:
    """Empty means "the username"."""
    if not text.strip(" "):
        return ""
    return clean_name(text, "a display name", MAX_DISPLAY_NAME_LENGTH)


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInputError(f"Unknown role {value!r}; choose one of: {allowed}.") from None


def _get(uow: UnitOfWork, account_id: int) -> Account:
    account = uow.repository(AccountRepository).get(account_id)
    if account is None:
        raise NotFoundError(f"There is no account with id {account_id}.")
    return account


def list_accounts(uow: UnitOfWork) -> list[AccountView]:
    return [view(a) for a in uow.repository(AccountRepository).all()]


def get_account(uow: UnitOfWork, account_id: int) -> AccountView:
    return view(_get(uow, account_id))


def create_account(
    uow: UnitOfWork,
    hasher: Hasher,
    actor: Actor,
    username: str,
    password: str,
    role: str,
    display_name: str = "",
) -> AccountView:
    """An administrator creates an account; its owner chooses a new password at first sign-in."""
    try:
        name = validate_username(username)
        check_password(password, name)
    except AccountError as error:
        raise InvalidInputError(str(error)) from None
    chosen_role, password_hash = _role(role), hasher.hash(password)  # before the database
    if uow.repository(AccountRepository).by_username(name) is not None:
        raise ConflictError(f"An account named {name!r} already exists; choose another username.")
    account = uow.repository(AccountRepository).add(
        Account(
            username=name,
            display_name=_display_name(display_name) or name,
            role=chosen_role.value,
            password_hash=password_hash,
            must_change_password=True,
            disabled=False,
            created_at=utc_now(),
        )
    )
    audit.record(uow, actor, "account.create", name, role=account.role)
    return view(account)


def update_account(
    uow: UnitOfWork,
    hasher: Hasher,
    actor: Actor,
    account_id: int,
    *,
    display_name: str | None = None,
    role: str | None = None,
    disabled: bool | None = None,
    new_password: str | None = None,
) -> AccountView:
    """Edit an account. The last active administrator can be neither demoted nor disabled."""
    account = _get(uow, account_id)
    changes: dict[str, object] = {}
    if display_name is not None and _display_name(display_name) != account.display_name:
        account.display_name = changes["display_name"] = (
            _display_name(display_name) or account.username
        )
    if role is not None and _role(role).value != account.role:
        _keep_an_administrator(uow, account)
        account.role = changes["role"] = _role(role).value
    if disabled is not None and disabled != account.disabled:
        _refuse_self_disable(actor, account, disabled)
        if disabled:
            _keep_an_administrator(uow, account)
            uow.repository(WebSessionRepository).end_for_account(
                account.id, utc_now(), "account disabled"
            )
        account.disabled = changes["disabled"] = disabled
    if new_password is not None:
        _set_password(account, hasher, new_password, must_change=True)
        changes["password"] = "reset"
    audit.record(uow, actor, "account.update", account.username, **changes)
    return view(account)


def _keep_an_administrator(uow: UnitOfWork, account: Account) -> None:
    active_admin = account.role == Role.ADMINISTRATOR and not account.disabled
    if active_admin and uow.repository(AccountRepository).count_active_administrators() <= 1:
        raise ConflictError(
            f"{account.username!r} is the last active administrator; "
            "make another account an administrator first."
        )


def _refuse_self_disable(actor: Actor, account: Account, disabled: bool) -> None:
    if disabled and actor.principal is not None and actor.principal.account_id == account.id:
        raise ConflictError("You cannot disable your own account; ask another administrator.")


def _set_password(account: Account, hasher: Hasher, password: str, must_change: bool) -> None:
    try:
        check_password(password, account.username)
    except AccountError as error:
        raise InvalidInputError(str(error)) from None
    account.password_hash = hasher.hash(password)
    account.must_change_password = must_change
    account.password_changed_at = utc_now()


WRONG_CURRENT_PASSWORD = "The current password is wrong; nothing was changed."
CONFIRMATION_DIFFERS = (
    "The new password and its confirmation differ; type the same new password twice. "
    "Nothing was changed."
)


def change_own_password(
    uow: UnitOfWork,
    hasher: Hasher,
    actor: Actor,
    account_id: int,
    current: str,
    new: str,
    confirmation: str | None = None,
) -> None:
    """The account holder changes their own password; required after the first sign-in.

    A refusal is in the audit log (`account.password_change.failed`, with the reason):
    repeated wrong current passwords are how a hijacked session tries to take the account.
    """
    account = _get(uow, account_id)
    if not hasher.verify(account.password_hash, current):
        _refuse_change(uow, actor, account, "wrong current password", WRONG_CURRENT_PASSWORD)
    if confirmation is not None and new != confirmation:
        _refuse_change(uow, actor, account, "confirmation differs", CONFIRMATION_DIFFERS)
    problems = password_problems(new, account.username, current)
    if problems:
        policy = " ".join(problems)
        _refuse_change(uow, actor, account, "password policy", policy, problems=problems)
    _set_password(account, hasher, new, must_change=False)
    audit.record(uow, actor, "account.password_change", account.username)


def _refuse_change(
    uow: UnitOfWork, actor: Actor, account: Account, reason: str, message: str, **details: object
) -> NoReturn:
    """Record the refused change and raise it; nothing else was changed, so the record is
    all the unit of work keeps."""
    target = account.username
    audit.record(uow, actor, "account.password_change.failed", target, reason=reason, **details)
    raise InvalidInputError(message, recorded=True)
