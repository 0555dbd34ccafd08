"""Health checks that arrive together share one database round trip, and a yes is kept
for a moment."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from sqlalchemy import Engine, create_engine, event

from bastion.appliance.health import ANSWER_KEPT_SECONDS, HealthProbe
from bastion.platform.runtime import Runtime


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counted(engine: Engine) -> list[int]:
    asked: list[int] = []
    event.listen(engine, "before_cursor_execute", lambda *_args: asked.append(1))
    return asked


def probe_of(engine: Engine, clock: Clock) -> HealthProbe:
    return HealthProbe(cast(Runtime, SimpleNamespace(engine=engine)), clock)


def test_fifty_health_checks_at_once_cost_one_query(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'site.db'}")
    asked, release = counted(engine), threading.Event()
    event.listen(engine, "before_cursor_execute", lambda *_args: release.wait(5))
    probe = probe_of(engine, Clock())

    async def together() -> list[bool]:
        checks = [asyncio.ensure_future(probe.database_answers()) for _ in range(50)]
        await asyncio.sleep(0.2)  # all fifty wait on the one question out
        release.set()
        return await asyncio.gather(*checks)

    assert asyncio.run(together()) == [True] * 50
    assert len(asked) == 1


def test_a_yes_is_kept_for_a_moment_and_then_asked_again(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'site.db'}")
    asked, clock = counted(engine), Clock()
    probe = probe_of(engine, clock)
    assert asyncio.run(probe.database_answers()) is True
    clock.now += ANSWER_KEPT_SECONDS / 2
    assert asyncio.run(probe.database_answers()) is True
    assert len(asked) == 1  # answered from the yes a moment ago
    clock.now += ANSWER_KEPT_SECONDS
    assert asyncio.run(probe.database_answers()) is True
    assert len(asked) == 2


def test_a_database_that_fails_is_unavailable_and_asked_again_at_once(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'site.db'}")
    probe = probe_of(engine, Clock())  # the clock stands still: only a yes could be kept
    assert asyncio.run(probe.database_answers()) is False
    assert asyncio.run(probe.database_answers()) is False
    (tmp_path / "missing").mkdir()
    assert asyncio.run(probe.database_answers()) is True
