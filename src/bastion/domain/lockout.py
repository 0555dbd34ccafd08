"""Growing delay and temporary lock after repeated failed sign-ins.

The first `free_attempts` failures cost nothing; each later failure doubles
the wait before the next attempt (up to `max_delay`); after `lock_after`
consecutive failures the account is locked for `lock_seconds`. A success
clears the record. The rules apply per username, known or not, so that the
answers do not reveal which accounts exist.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta


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


def record_failure(policy: LockoutPolicy, record: FailureRecord, now: datetime) -> FailureRecord:
    if record.locked_until is not None and now >= record.locked_until:
        record = FailureRecord()
    failures = record.failures + 1
    locked_until = record.locked_until
    if failures >= policy.lock_after:
        locked_until = now + timedelta(seconds=policy.lock_seconds)
    return replace(record, failures=failures, last_failure_at=now, locked_until=locked_until)
