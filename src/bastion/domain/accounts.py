"""Accounts, roles and the password policy."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

FIRST_LOGIN_USERNAME = "admin"
FIRST_LOGIN_PASSWORD = "password"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_COMMON = frozenset(
    {
        "password",
        "password123",
        "passw0rd",
        "123456789012",
        "qwertyuiopas",
        "administrator",
        "letmein12345",
        "changeme1234",
        "bastion12345",
    }
)


class Role(StrEnum):
    ADMINISTRATOR = "administrator"
    REPRESENTATIVE = "representative"


class AccountError(Exception):
    """An account operation was refused; the message says why and what to do."""


class PasswordPolicyError(AccountError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(" ".join(problems))


@dataclass(frozen=True)
class Principal:
    """Who is acting: a signed-in account or an API client."""

    name: str
    role: Role
    account_id: int | None = None
    api_client_id: int | None = None

    @property
    def is_administrator(self) -> bool:
        return self.role is Role.ADMINISTRATOR


def validate_username(username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME.match(name):
        raise AccountError(
            "A username has 2 to 64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def password_problems(password: str, username: str, current: str | None = None) -> list[str]:
    """Every reason the policy refuses `password`; an empty list means it is accepted."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"Use at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"Use at most {MAX_PASSWORD_LENGTH} characters.")
    if password.lower() in _COMMON or password == FIRST_LOGIN_PASSWORD:
        problems.append("This password is too common; choose another.")
    if username and username.lower() in password.lower():
        problems.append("The password must not contain the username.")
    if len(set(password)) < 5:
        problems.append("Use at least 5 different characters.")
    if current is not None and password == current:
        problems.append("The new password must differ from the current one.")
    return problems


def check_password(password: str, username: str, current: str | None = None) -> None:
    problems = password_problems(password, username, current)
    if problems:
        raise PasswordPolicyError(problems)
