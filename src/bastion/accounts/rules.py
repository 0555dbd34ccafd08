"""Accounts' rules: usernames, the password policy, and the sign-in lockout.

The lockout: the first `free_attempts` failures cost nothing; each later failure doubles
the wait before the next attempt (up to `max_delay`); after `lock_after`
consecutive failures the account is locked for `lock_seconds`. A success
clears the record. The rules apply per username, known or not, so that the
answers do not reveal which accounts exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

FIRST_LOGIN_USERNAME = "admin"
FIRST_LOGIN_PASSWORD = "password"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"
_USERNAME = re.compile(USERNAME_PATTERN)
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


class Hasher(Protocol):
    """Hashes passwords and secrets and checks them (argon2 on the appliance)."""

    def hash(self, secret: str) -> str: ...

    def verify(self, hashed: str, secret: str) -> bool: ...


class AccountError(Exception):
    """An account operation was refused; the message says why and what to do."""


class PasswordPolicyError(AccountError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(" ".join(problems))


def validate_username(username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME.fullmatch(name):
        raise AccountError(
            "A username has 2 to 64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


@dataclass(frozen=True)
class PasswordRule:
    """One rule of the password policy: as a form's hint says it, and as a refusal says it.

    Both come from this one table, so what the pages promise is what the policy checks.
    """

    hint: str
    problem: str
    broken_by: Callable[[str, str, str | None], bool]
    """(password, username, current password or None) -> whether the rule refuses it."""
    only_when_changing: bool = False


PASSWORD_RULES: tuple[PasswordRule, ...] = (
    PasswordRule(
        f"at least {MIN_PASSWORD_LENGTH} characters",
        f"Use at least {MIN_PASSWORD_LENGTH} characters.",
        lambda password, _user, _current: len(password) < MIN_PASSWORD_LENGTH,
    ),
    PasswordRule(
        f"at most {MAX_PASSWORD_LENGTH}",
        f"Use at most {MAX_PASSWORD_LENGTH} characters.",
        lambda password, _user, _current: len(password) > MAX_PASSWORD_LENGTH,
    ),
    PasswordRule(
        "not a common password",
        "This password is too common; choose another.",
        lambda password, _user, _current: (
            password.lower() in _COMMON or password == FIRST_LOGIN_PASSWORD
        ),
    ),
    PasswordRule(
        "not containing the username",
        "The password must not contain the username.",
        lambda password, user, _current: bool(user) and user.lower() in password.lower(),
    ),
    PasswordRule(
        "at least 5 different characters",
        "Use at least 5 different characters.",
        lambda password, _user, _current: len(set(password)) < 5,
    ),
    PasswordRule(
        "not the current password",
        "The new password must differ from the current one.",
        lambda password, _user, current: current is not None and password == current,
        only_when_changing=True,
    ),
)


def password_problems(password: str, username: str, current: str | None = None) -> list[str]:
    """Every reason the policy refuses `password`; an empty list means it is accepted."""
    return [r.problem for r in PASSWORD_RULES if r.broken_by(password, username, current)]


def password_hint(changing_own: bool = False) -> str:
    """The policy in one sentence for a password field, from the same rules that check it."""
    hints = [r.hint for r in PASSWORD_RULES if changing_own or not r.only_when_changing]
    sentence = ", ".join(hints[:-1]) + f" and {hints[-1]}" if len(hints) > 1 else hints[0]
    return sentence[0].upper() + sentence[1:] + "."


def check_password(password: str, username: str, current: str | None = None) -> None:
    problems = password_problems(password, username, current)
    if problems:
        raise PasswordPolicyError(problems)


@dataclass(frozen=True)
class LockoutPolicy:
    free_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0
    lock_after: int = 10
    lock_seconds: float = 900.0

    def delay_after(self, failures: int) -> float:
        """Seconds to wait after `failures` consecutive failures."""
        extra = failures - self.free_attempts
        if extra < 0:
            return 0.0
        return float(min(self.base_delay * 2**extra, self.max_delay))


@dataclass(frozen=True)
class FailureRecord:
    failures: int = 0
    last_failure_at: datetime | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    wait_seconds: float = 0.0
    locked: bool = False

    def message(self) -> str:
        if self.allowed:
            return ""
        seconds = max(1, round(self.wait_seconds))
        if self.locked:
            minutes = max(1, round(self.wait_seconds / 60))
            return (
                f"This account is locked after too many failed sign-ins. Try again in about "
                f"{minutes} minute(s), or ask an administrator to check the audit log."
            )
        return f"Too many failed sign-ins. Wait {seconds} second(s) before trying again."


def assess(policy: LockoutPolicy, record: FailureRecord, now: datetime) -> Verdict:
    """May a sign-in be attempted now?"""
    if record.locked_until is not None and now < record.locked_until:
        return Verdict(False, (record.locked_until - now).total_seconds(), locked=True)
    if record.last_failure_at is None:
        return Verdict(True)
    ready_at = record.last_failure_at + timedelta(seconds=policy.delay_after(record.failures))
    if now < ready_at:
        return Verdict(False, (ready_at - now).total_seconds())
    return Verdict(True)


def delay_steps(policy: LockoutPolicy) -> tuple[tuple[int, float], ...]:
    """`policy.delay_after` as a step function, longest wait first: each pair is (from this
    many failures on, wait this many seconds). Fewer failures than the last pair wait nothing.

    The database counts failures in one statement (no read-modify-write), so it needs the
    waits as a short table rather than as a formula; the delays double until they reach
    the maximum, so the table has a few rows (at most 64).
    """
    steps: list[tuple[int, float]] = []
    failures = policy.free_attempts
    while len(steps) < 64:
        delay = policy.delay_after(failures)
        if delay <= 0:
            break
        steps.append((failures, delay))
        if delay >= policy.max_delay:
            break
        failures += 1
    return tuple(reversed(steps))


def record_failure(policy: LockoutPolicy, record: FailureRecord, now: datetime) -> FailureRecord:
    if record.locked_until is not None and now >= record.locked_until:
        record = FailureRecord()
    failures = record.failures + 1
    locked_until = record.locked_until
    if failures >= policy.lock_after:
        locked_until = now + timedelta(seconds=policy.lock_seconds)
    return replace(record, failures=failures, last_failure_at=now, locked_until=locked_until)
