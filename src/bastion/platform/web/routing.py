"""The routers every capability declares its pages and API on.

FastAPI runs a plain `def` endpoint on a worker thread, and then, on a second trip to a
worker thread, checks its answer against the response model. Each trip there and back
costs more CPU than a small read itself (about 70 microseconds: a wake of the thread,
then of the event loop). A route here runs a plain `def` endpoint on a worker thread
as before, and checks the answer on the event loop, where it is only Python work on
objects already loaded (sessions are made with `expire_on_commit=False`, and a
statement that ran on the loop would be reported: `platform.db.engine`).

FastAPI tries a request against every route of every included router in turn, each try
a regular expression and some bookkeeping (a few microseconds). With some thirty
routers, a request for a route of the last ones spent 0.4-0.6 ms of CPU only on finding
it. A router here first checks the request's path against the literal beginnings of
its routes' paths (up to their first parameter), and is skipped when none fits: no
route of it could match, since each route's expression begins with that literal text.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def _awaitable(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """`endpoint`, run on a worker thread, as a coroutine function FastAPI awaits; it
    keeps the endpoint's signature and annotations (`functools.wraps`)."""

    @functools.wraps(endpoint)
    async def on_a_thread(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(endpoint, *args, **kwargs)

    return on_a_thread


class OneTripRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if inspect.isfunction(endpoint) and not inspect.iscoroutinefunction(endpoint):
            endpoint = _awaitable(endpoint)
        super().__init__(path, endpoint, **kwargs)


def _literal_start(route: BaseRoute) -> str:
    """The text every path the route matches begins with: its path up to the first
    parameter (all of it for a route without one, nothing for a route without a path)."""
    return str(getattr(route, "path", "")).split("{", 1)[0]


class Router(APIRouter):
    """An `APIRouter` whose plain `def` endpoints take one trip to a worker thread, and
    that is skipped at once for a request no route of it could match.

    It is included in the app without a prefix of its own (`platform.web.app`): the
    paths of its routes are the paths requests come to."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(route_class=OneTripRoute, **kwargs)
        self._starts: tuple[str, ...] = ()
        self._starts_of = -1
        """How many routes `_starts` was worked out from (routes are only ever added)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not get_route_path(scope).startswith(self._literal_starts()):
            return Match.NONE, {}
        return super().matches(scope)

    def _literal_starts(self) -> tuple[str, ...]:
        if self._starts_of != len(self.routes):
            self._starts = tuple(sorted({_literal_start(route) for route in self.routes}))
            self._starts_of = len(self.routes)
        return self._starts
