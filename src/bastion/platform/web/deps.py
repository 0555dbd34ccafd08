"""FastAPI dependencies every capability's pages and API share: the runtime, a unit of
work, a wired part, and where a request came from.

A dependency that does no I/O is `async def`: FastAPI runs a plain `def` on a worker
thread, and the hop there and back costs more than the dependency itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request

from bastion.platform.runtime import Runtime
from bastion.platform.unit_of_work import UnitOfWork

T = TypeVar("T")


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_uow(request: Request) -> AsyncIterator[UnitOfWork]:
    """The request's one unit of work; a page that answers a refusal itself finds it on
    ``request.state.uow`` to keep the refusal's record (see `ServiceError.recorded`).

    Opened on the event loop (a session touches no database until it is used) and
    closed on a worker thread (a rollback or commit may wait on it), or on the event
    loop when it only read (`UnitOfWork.leaves_at_once`): a read takes no thread hop
    for the unit of work, a plain `def` dependency would take one each way.

    Admitted first (`Runtime.database_requests`, `platform.admission`): while a few
    requests run, or beyond the database connections the pool gives out, a request
    waits here on the event loop, holding nothing."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.database_requests.turn():
        uow = runtime.uow().__enter__()
        request.state.uow = uow
        try:
            yield uow
        except BaseException as error:
            await _close(uow, error)
            raise
        if uow.leaves_at_once():
            uow.__exit__(None, None, None)
            return
        await _close(uow, None)


async def _close(uow: UnitOfWork, error: BaseException | None) -> None:
    """As FastAPI closes a plain `def` dependency: shielded from the request's
    cancellation (a client that hangs up still gets its connection back to the pool),
    and outside the shared thread limit (a full pool waiting for a database connection
    must not keep the one that would free it from being given back)."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(
            uow.__exit__,
            type(error) if error else None,
            error,
            error.__traceback__ if error else None,
            limiter=anyio.CapacityLimiter(1),
        )


UowDep = Annotated[UnitOfWork, Depends(get_uow)]


def part(kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency that gives the runtime's part of type `kind`."""

    async def get(request: Request) -> T:
        runtime: Runtime = request.app.state.runtime
        return runtime.part(kind)

    get.__name__ = f"part_{kind.__name__}"
    return get


def source_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"
