"""Health checks that arrive together share one database round trip."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import create_engine, event

from bastion.appliance.health import HealthProbe
from bastion.platform.runtime import Runtime


def test_fifty_health_checks_at_once_cost_one_query_and_the_next_asks_again(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'site.db'}")
    asked, release = [], threading.Event()

    @event.listens_for(engine, "before_cursor_execute")
    def count(*_args: Any) -> None:
        asked.append(1)
        release.wait(5)

    probe = HealthProbe(cast(Runtime, SimpleNamespace(engine=engine)))

    async def together() -> list[bool]:
        checks = [asyncio.ensure_future(probe.database_answers()) for _ in range(50)]
        await asyncio.sleep(0.2)  # all fifty wait on the one question out
        release.set()
        return await asyncio.gather(*checks)

    assert asyncio.run(together()) == [True] * 50
    assert len(asked) == 1
    assert asyncio.run(probe.database_answers()) is True
    assert len(asked) == 2


def test_a_database_that_fails_is_unavailable(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'site.db'}")
    probe = HealthProbe(cast(Runtime, SimpleNamespace(engine=engine)))
    assert asyncio.run(probe.database_answers()) is False
