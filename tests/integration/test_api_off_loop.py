"""No API read runs a database statement on the event loop: one there holds up every
connection of the site while it waits (for a pooled connection, SQLite's lock,
PostgreSQL's round trip). Every `GET` of the API without an id in its path, with a
bearer token, over the appliance's own listeners."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import event

from bastion.entrypoints.web import ROUTERS
from tests.support.served_app import served_app

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_no_api_read_runs_a_statement_on_the_event_loop(tmp_path: Path) -> None:
    reads = sorted(
        route.path
        for route in (r for router in ROUTERS for r in router.routes)
        if isinstance(route, APIRoute)
        and "GET" in route.methods
        and "{" not in route.path
        and route.path.startswith("/api/v1/")
    )
    on_loop: list[str] = []
    asking = ""

    def record(_connection: object, _cursor: object, statement: str, *_: object) -> None:
        try:
            asyncio.get_running_loop()  # worker threads have none
        except RuntimeError:
            return
        on_loop.append(f"{asking}: {statement.splitlines()[0][:80]}")

    statuses: dict[str, int] = {}
    async with served_app(tmp_path, "api.example.test", "lecteur") as site:
        engine = site.runtime.engine
        bearer = {"Authorization": site.authorization}
        async with httpx.AsyncClient(base_url=site.url, verify=site.tls, headers=bearer) as api:
            event.listen(engine, "before_cursor_execute", record)
            try:
                for asking in reads:
                    statuses[asking] = (await api.get(asking)).status_code
            finally:
                event.remove(engine, "before_cursor_execute", record)
    assert len(reads) > 15
    # some answer their documented refusals here: no supervisor to ask about installs
    # (503), no pair upgrade started (404)
    assert {path: status for path, status in statuses.items() if status == 500} == {}
    assert sum(status == 200 for status in statuses.values()) >= 15
    assert on_loop == []
