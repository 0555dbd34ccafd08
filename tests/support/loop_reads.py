"""Database statements run on an event loop's thread. One there holds up every connection
of the site while it waits (for a pooled connection, SQLite's lock, PostgreSQL's round
trip); requests read on worker threads, which have no running loop."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from fastapi.routing import APIRoute
from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.entrypoints.web import ROUTERS
from bastion.platform.db.engine import watch_statements_on_the_loop

_SERVING: ContextVar[str] = ContextVar("the request being served", default="")


def marking_requests(app: ASGIApp) -> ASGIApp:
    """`app`, with what it runs for a request (tasks it starts too) marked as such: a
    test whose own code shares the site's event loop can tell the site's statements
    from its own (`statements_on_the_loop(engine, serving_only=True)`)."""

    async def marked(scope: Scope, receive: Receive, send: Send) -> None:
        token = _SERVING.set(f"{scope.get('method', scope['type'])} {scope.get('path', '')}")
        try:
            await app(scope, receive, send)
        finally:
            _SERVING.reset(token)

    return marked


@contextmanager
def statements_on_the_loop(engine: Engine, serving_only: bool = False) -> Iterator[list[str]]:
    """The first line of each statement `engine` runs on a running event loop meanwhile;
    `serving_only`: only those run for a request of an app wrapped by `marking_requests`
    (prefixed with the request)."""
    found: list[str] = []

    def record(statement: str) -> None:
        serving = _SERVING.get()
        if serving_only and not serving:
            return
        first = statement.splitlines()[0][:80]
        found.append(f"{serving}: {first}" if serving_only else first)

    stop = watch_statements_on_the_loop(engine, record)
    try:
        yield found
    finally:
        stop()


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
