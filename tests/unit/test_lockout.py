from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bastion.accounts.rules import (
    FailureRecord,
    LockoutPolicy,
    assess,
    delay_steps,
    record_failure,
)

POLICY = LockoutPolicy(
    free_attempts=3, base_delay=1.0, max_delay=8.0, lock_after=6, lock_seconds=60
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fail_times(n: int, policy: LockoutPolicy = POLICY) -> tuple[FailureRecord, datetime]:
    record, now = FailureRecord(), T0
    for _ in range(n):
        record = record_failure(policy, record, now)
        now += timedelta(seconds=policy.delay_after(record.failures))
    return record, now


def test_the_first_failures_cost_nothing() -> None:
    record, _ = fail_times(3)
    assert assess(POLICY, record, record.last_failure_at or T0).allowed is False
    assert POLICY.delay_after(2) == 0.0
    record2, _ = fail_times(2)
    assert assess(POLICY, record2, record2.last_failure_at or T0).allowed


def test_the_delay_doubles_then_stops_growing() -> None:
    delays = [POLICY.delay_after(n) for n in range(1, 9)]
    assert delays == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_throttled_attempt_says_how_long_to_wait() -> None:
    record = record_failure(POLICY, FailureRecord(failures=4, last_failure_at=T0), T0)
    verdict = assess(POLICY, record, T0 + timedelta(seconds=1))
    assert not verdict.allowed and not verdict.locked
    assert "Wait 3 second(s)" in verdict.message()


def test_enough_failures_lock_the_account_for_the_lock_time() -> None:
    record, now = fail_times(6)
    assert record.locked_until == record.last_failure_at + timedelta(seconds=60)  # type: ignore[operator]
    verdict = assess(POLICY, record, now)
    assert verdict.locked and "locked" in verdict.message()
    assert assess(POLICY, record, record.locked_until + timedelta(seconds=1)).allowed  # type: ignore[operator]


def test_a_failure_after_the_lock_expired_starts_counting_afresh() -> None:
    record, _ = fail_times(6)
    after = record.locked_until + timedelta(seconds=1)  # type: ignore[operator]
    assert record_failure(POLICY, record, after).failures == 1


@given(st.integers(min_value=0, max_value=200))
def test_the_delay_never_exceeds_the_maximum(failures: int) -> None:
    assert 0.0 <= POLICY.delay_after(failures) <= POLICY.max_delay


@given(
    free=st.integers(0, 6),
    base=st.sampled_from([0.0, 0.001, 0.5, 1.0, 3.0]),
    maximum=st.sampled_from([0.0, 1.0, 30.0, 900.0]),
    failures=st.integers(0, 400),
)
def test_the_delay_table_for_the_database_says_what_delay_after_says(
    free: int, base: float, maximum: float, failures: int
) -> None:
    """The counter in SQL reads the waits from `delay_steps`; they must agree everywhere."""
    policy = LockoutPolicy(free_attempts=free, base_delay=base, max_delay=maximum)
    steps = delay_steps(policy)
    assert len(steps) <= 64
    looked_up = next((seconds for since, seconds in steps if failures >= since), 0.0)
    assert looked_up == policy.delay_after(failures)
