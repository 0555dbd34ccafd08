"""FastAPI dependencies every capability's pages and API share: the runtime, a unit of
work, a wired part, and where a request came from.

A dependency that does no I/O is `async def`: FastAPI runs a plain `def` on a worker
thread, and the hop there and back costs more than the dependency itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from bastion.platform.runtime import Runtime
from bastion.platform.unit_of_work import UnitOfWork

T = TypeVar("T")


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_uow(request: Request, runtime: RuntimeDep) -> Iterator[UnitOfWork]:
    """The request's one unit of work; a page that answers a refusal itself finds it on
    ``request.state.uow`` to keep the refusal's record (see `ServiceError.recorded`)."""
    with runtime.uow() as uow:
        request.state.uow = uow
        yield uow


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
