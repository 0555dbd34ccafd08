"""Accounts: create, edit, disable, change password; the last administrator stays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bastion.adapters.db.models import Account
from bastion.domain.accounts import (
    AccountError,
    Role,
    check_password,
    validate_username,
)
from bastion.services import audit
from bastion.services.audit import Actor
from bastion.services.errors import ConflictError, InvalidInputError, NotFoundError
from bastion.services.ports import Hasher, utc_now
from bastion.services.unit_of_work import UnitOfWork


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


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInputError(f"Unknown role {value!r}; choose one of: {allowed}.") from None


def _get(uow: UnitOfWork, account_id: int) -> Account:
    account = uow.accounts.get(account_id)
    if account is None:
        raise NotFoundError(f"There is no account with id {account_id}.")
    return account


def list_accounts(uow: UnitOfWork) -> list[AccountView]:
    return [view(a) for a in uow.accounts.all()]


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
    if uow.accounts.by_username(name) is not None:
        raise ConflictError(f"An account named {name!r} already exists; choose another username.")
    account = uow.accounts.add(
        Account(
            username=name,
            display_name=display_name.strip() or name,
            role=_role(role).value,
            password_hash=hasher.hash(password),
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
    if display_name is not None and display_name.strip() != account.display_name:
        account.display_name = changes["display_name"] = display_name.strip() or account.username
    if role is not None and _role(role).value != account.role:
        _keep_an_administrator(uow, account)
        account.role = changes["role"] = _role(role).value
    if disabled is not None and disabled != account.disabled:
        _refuse_self_disable(actor, account, disabled)
        if disabled:
            _keep_an_administrator(uow, account)
            uow.web_sessions.end_for_account(account.id, utc_now(), "account disabled")
        account.disabled = changes["disabled"] = disabled
    if new_password is not None:
        _set_password(account, hasher, new_password, must_change=True)
        changes["password"] = "reset"
    audit.record(uow, actor, "account.update", account.username, **changes)
    return view(account)


def _keep_an_administrator(uow: UnitOfWork, account: Account) -> None:
    active_admin = account.role == Role.ADMINISTRATOR and not account.disabled
    if active_admin and uow.accounts.count_active_administrators() <= 1:
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


def change_own_password(
    uow: UnitOfWork, hasher: Hasher, actor: Actor, account_id: int, current: str, new: str
) -> None:
    """The account holder changes their own password; required after the first sign-in."""
    account = _get(uow, account_id)
    if not hasher.verify(account.password_hash, current):
        raise InvalidInputError("The current password is wrong; nothing was changed.")
    try:
        check_password(new, account.username, current)
    except AccountError as error:
        raise InvalidInputError(str(error)) from None
    _set_password(account, hasher, new, must_change=False)
    audit.record(uow, actor, "account.password_change", account.username)
