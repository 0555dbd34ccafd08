"""Database statements run on an event loop's thread. One there holds up every connection
of the site while it waits (for a pooled connection, SQLite's lock, PostgreSQL's round
trip); requests read on worker threads, which have no running loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.routing import APIRoute
from sqlalchemy import Engine, event

from bastion.entrypoints.web import ROUTERS


@contextmanager
def statements_on_the_loop(engine: Engine) -> Iterator[list[str]]:
    """The first line of each statement `engine` runs on a running event loop meanwhile."""
    found: list[str] = []

    def record(_connection: object, _cursor: object, statement: str, *_: object) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        found.append(statement.splitlines()[0][:80])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", record)


def plain_reads(api: bool) -> list[str]:
    """Every GET path of the site without an id in it: the API's, or the pages'."""
    return sorted(
        route.path
        for route in (r for router in ROUTERS for r in router.routes)
        if isinstance(route, APIRoute)
        and "GET" in route.methods
        and "{" not in route.path
        and route.path.startswith("/api/v1/") == api
    )
