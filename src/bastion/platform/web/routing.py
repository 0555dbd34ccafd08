"""The routers every capability declares its pages and API on.

FastAPI runs a plain `def` endpoint on a worker thread, and then, on a second trip to a
worker thread, checks its answer against the response model. Each trip there and back
costs more CPU than a small read itself (about 70 microseconds: a wake of the thread,
then of the event loop). A route here runs a plain `def` endpoint on a worker thread
as before, and checks the answer on the event loop, where it is only Python work on
objects already loaded (sessions are made with `expire_on_commit=False`, and a
statement that ran on the loop would be reported: `platform.db.engine`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute


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


class Router(APIRouter):
    """An `APIRouter` whose plain `def` endpoints take one trip to a worker thread."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(route_class=OneTripRoute, **kwargs)
