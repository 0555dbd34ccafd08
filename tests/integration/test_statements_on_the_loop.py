"""The worker's and the gateway's report of database statements run on their event loop
(`report_statements_on_the_loop`), against a real SQLite database. Every test that runs a
real appliance fails on such a report (`tests.support.appliance`)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from bastion.jump_clients.store import wake_secret
from bastion.platform.db.engine import (
    STATEMENT_ON_THE_LOOP,
    make_engine,
    migrate,
    report_statements_on_the_loop,
    session_factory,
)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    made = make_engine(f"sqlite:///{tmp_path / 'site.db'}")
    migrate(made)
    report_statements_on_the_loop(made, logging.getLogger("bastion.test.loop"))
    return made


def _select(engine: Engine, value: int) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT :value"), {"value": value}).scalar()


def _reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if STATEMENT_ON_THE_LOOP in r.getMessage()]


def test_a_statement_on_the_loop_is_reported_with_the_code_that_ran_it(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    factory = session_factory(engine)

    async def on_the_loop() -> None:
        wake_secret(factory)  # made and saved the first time: a read, then a write
        wake_secret(factory)  # read again from the same place: not reported again

    with caplog.at_level(logging.WARNING):
        asyncio.run(on_the_loop())
    reports = _reports(caplog)
    assert len(reports) == 2, reports
    assert reports[0].startswith(f"{STATEMENT_ON_THE_LOOP}: SELECT settings.")
    assert reports[1].startswith(f"{STATEMENT_ON_THE_LOOP}: INSERT INTO settings")
    assert all("store.wake_secret:" in report for report in reports)


def test_statements_on_worker_threads_and_without_a_loop_are_not_reported(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    async def off_the_loop() -> None:
        await asyncio.to_thread(_select, engine, 2)

    with caplog.at_level(logging.WARNING):
        asyncio.run(off_the_loop())
        _select(engine, 3)
    assert _reports(caplog) == []


def test_a_statement_from_outside_the_appliance_code_says_so(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    async def many() -> None:
        for value in range(50):
            _select(engine, value)

    with caplog.at_level(logging.WARNING):
        asyncio.run(many())
    assert _reports(caplog) == [f"{STATEMENT_ON_THE_LOOP}: SELECT ?, from outside the appliance"]
