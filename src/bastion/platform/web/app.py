"""The appliance's ASGI app: middleware, error answers and static files common to every
capability. The composition root (`bastion.entrypoints.web`) adds each capability's
routers, exception handlers and page context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from bastion.platform import build
from bastion.platform.runtime import Runtime
from bastion.platform.web import answers, contract, docs
from bastion.platform.web.templating import PACKAGE_ROOT, PageContext

Handler = Callable[[Request, Any], Awaitable[Response]]
Middleware = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


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
        app.middleware("http")(added)
    app.middleware("http")(_refuse_changes_while_frozen)
    app.middleware("http")(_security_headers)
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


async def _security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """On every answer; a crash's answer gets them from `answers.crashed`."""
    return answers.secure(await call_next(request), request.url.path)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _refuse_changes_while_frozen(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """During an install's snapshot and migration, reads go on and changes wait.

    Once the new version serves (this worker drains), a browser's change on a kept-open
    connection is sent back to be repeated on a new connection, which the new version
    accepts; every answer of a draining worker closes its connection.
    """
    runtime = request.app.state.runtime
    frozen = runtime.frozen
    if runtime.draining:
        if (
            frozen is not None
            and request.method not in SAFE_METHODS
            and not answers.is_api(request)
        ):
            response: Response = RedirectResponse(str(request.url), status_code=307)
        else:
            response = await call_next(request)
        response.headers["Connection"] = "close"
        return response
    if frozen is None or request.method in SAFE_METHODS:
        return await call_next(request)
    message = (
        f"Changes are paused for a moment because {frozen}. Nothing was changed; "
        "try again in a minute."
    )
    return answers.error_answer(request, 503, "UnavailableError", message, {"Retry-After": "30"})
