"""When a Jump Client tries again: full jitter after failures, the site's word otherwise."""

from __future__ import annotations

import random
import statistics

from bastion.agents.backoff import BackoffPolicy


def test_failures_wait_a_uniform_time_under_a_doubling_ceiling() -> None:
    policy, rng = BackoffPolicy(base=1.0, cap=60.0), random.Random(1)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (500, 60.0)]:
        waits = [policy.after_failure(failures, rng) for _ in range(2000)]
        assert min(waits) >= 0.0 and max(waits) <= ceiling
        assert max(waits) > 0.9 * ceiling  # the whole range is used ...
        assert min(waits) < 0.1 * ceiling  # ... from near zero: full jitter
        assert abs(statistics.mean(waits) - ceiling / 2) < 0.05 * ceiling


def test_a_fleet_failing_together_does_not_retry_together() -> None:
    policy = BackoffPolicy(base=1.0, cap=300.0)
    waits = [policy.after_failure(5, random.Random(seed)) for seed in range(1000)]
    per_second = [sum(1 for w in waits if s <= w < s + 1) for s in range(16)]
    assert max(per_second) < 120  # ~62 expected per second over 16 s, never a herd


def test_retry_after_is_obeyed_and_bounded() -> None:
    policy = BackoffPolicy(max_retry_after=86400.0)
    assert policy.after_retry_after(12.5) == 12.5
    assert policy.after_retry_after(-3.0) == 0.0
    assert policy.after_retry_after(10 * 86400.0) == 86400.0


def test_a_lost_connection_waits_the_sites_offset_for_this_client() -> None:
    policy = BackoffPolicy(cap=300.0, max_retry_after=86400.0)
    assert policy.after_lost(40.5) == 40.5
    assert policy.after_lost(1000.0) == 1000.0  # the site's spread is not cut by the cap
    assert policy.after_lost(-1.0) == 0.0
    assert policy.after_lost(10**9) == 86400.0
