"""The sign-in failure counter in the database (one statement per attempt) against real
SQLite and PostgreSQL: it follows the lockout rules exactly, and concurrent attempts
from many connections are each counted once."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bastion.accounts.repository import SignInFailureRepository
from bastion.accounts.rules import FailureRecord, LockoutPolicy, assess, record_failure
from bastion.platform.db.engine import make_engine, migrate
from tests.support.postgres import available_server

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
names = (f"user{n}" for n in itertools.count())


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("lockout") / "db.sqlite"
        made = make_engine(f"sqlite:///{path}")
        migrate(made)
        yield made
        made.dispose()
        return
    with available_server() as server:
        made = make_engine(server.url())
        migrate(made)
        yield made
        made.dispose()


def reserve(
    engine: Engine, name: str, policy: LockoutPolicy, now: datetime
) -> FailureRecord | None:
    with Session(engine) as session:
        counted = SignInFailureRepository(session).reserve(name, policy, now)
        session.commit()
    return counted


policies = st.builds(
    LockoutPolicy,
    free_attempts=st.integers(0, 4),
    base_delay=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    max_delay=st.sampled_from([1.0, 4.0, 30.0]),
    lock_after=st.integers(1, 8),
    lock_seconds=st.sampled_from([1.0, 5.0, 900.0]),
)
gaps = st.lists(st.sampled_from([0.0, 0.2, 0.5, 1.0, 2.0, 4.5, 30.0, 1000.0]), max_size=25)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(policy=policies, steps=gaps)
def test_the_counter_follows_the_lockout_rules(
    engine: Engine, policy: LockoutPolicy, steps: list[float]
) -> None:
    name, expected, now = next(names), FailureRecord(), T0
    for gap in steps:
        now += timedelta(seconds=gap)
        allowed = assess(policy, expected, now).allowed
        if allowed:
            expected = record_failure(policy, expected, now)
        counted = reserve(engine, name, policy, now)
        assert counted == (expected if allowed else None), (gap, expected, counted)


@pytest.mark.parametrize(
    ("policy", "admitted"),
    [
        (LockoutPolicy(free_attempts=3, base_delay=1.0, lock_after=10), 3),
        (LockoutPolicy(free_attempts=3, base_delay=0.0, lock_after=10), 10),
    ],
)
def test_concurrent_attempts_are_each_counted_once(
    engine: Engine, policy: LockoutPolicy, admitted: int
) -> None:
    """40 connections count at the same instant: exactly as many get through as the rules
    allow one after another, and the count says so."""
    name, results, start = next(names), [], threading.Barrier(40)

    def attempt() -> None:
        start.wait()
        results.append(reserve(engine, name, policy, T0))

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counted = sorted(r.failures for r in results if r is not None)
    assert counted == list(range(1, admitted + 1))
    with Session(engine) as session:
        assert SignInFailureRepository(session).get(name).failures == admitted
