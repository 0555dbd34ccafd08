"""The appliance's ASGI app: middleware, error answers and static files common to every
capability. The composition root (`bastion.entrypoints.web`) adds each capability's
routers, exception handlers and page context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from bastion.platform import build
from bastion.platform.runtime import Runtime
from bastion.platform.web import answers, contract, docs
from bastion.platform.web.middleware import ChangesGate, SecurityHeaders
from bastion.platform.web.templating import PACKAGE_ROOT, PageContext

Handler = Callable[[Request, Any], Awaitable[Response]]
Middleware = Callable[[ASGIApp], ASGIApp]
"""Wraps the app: called with it as `app=`, returns the ASGI app that serves in its place."""


def create_app(
    runtime: Runtime,
    routers: Iterable[APIRouter],
    *,
    handlers: Mapping[type[Exception], Handler] | None = None,
    page_context: Sequence[PageContext] = (),
    template_context: Mapping[str, Sequence[PageContext]] | None = None,
    middleware: Sequence[Middleware] = (),
) -> FastAPI:
    app = FastAPI(
        title="Bastion appliance API",
        version=build.site_version(),
        docs_url=None,
        redoc_url=None,
        openapi_url=docs.OPENAPI_URL,
    )
    app.state.runtime = runtime
    app.state.page_context = list(page_context)
    app.state.template_context = {k: list(v) for k, v in (template_context or {}).items()}
    for added in middleware:
        app.add_middleware(added)
    app.add_middleware(ChangesGate)
    app.add_middleware(SecurityHeaders)
    for router in (*routers, docs.router):
        app.include_router(router)
    app.mount(docs.ASSETS_URL, docs.swagger_assets(), name="swagger-ui")
    app.mount("/static", _static_files(), name="static")
    answers.install(app)
    contract.install(app)
    for kind, handler in (handlers or {}).items():
        app.add_exception_handler(kind, handler)
    return app


def _static_files() -> StaticFiles:
    """The platform's `static/` folder and every capability's, served under /static."""
    own = Path(__file__).parent / "static"
    packages: list[str | tuple[str, str]] = [
        (f"bastion.{folder.parent.name}", "static")
        for folder in sorted(PACKAGE_ROOT.glob("*/static"))
        if folder.is_dir()
    ]
    return StaticFiles(directory=own, packages=packages)
