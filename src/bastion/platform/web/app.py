"""The appliance's ASGI app: middleware, error answers and static files common to every
capability. The composition root (`bastion.entrypoints.web`) adds each capability's
routers, exception handlers and page context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion.platform import build, errors
from bastion.platform.runtime import Runtime
from bastion.platform.web.csrf import CsrfError
from bastion.platform.web.errors import status_of
from bastion.platform.web.templating import PACKAGE_ROOT, PageContext, render

Handler = Callable[[Request, Any], Awaitable[Response]]
Middleware = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


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
        docs_url="/api/v1/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.runtime = runtime
    app.state.page_context = list(page_context)
    app.state.template_context = {k: list(v) for k, v in (template_context or {}).items()}
    for added in middleware:
        app.middleware("http")(added)
    app.middleware("http")(_refuse_changes_while_frozen)
    app.middleware("http")(_security_headers)
    for router in routers:
        app.include_router(router)
    app.mount("/static", _static_files(), name="static")
    _install_error_handlers(app)
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
    response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    return response


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
        if frozen is not None and request.method not in SAFE_METHODS and not _is_api(request):
            response: Response = RedirectResponse(str(request.url), status_code=307)
        else:
            response = await call_next(request)
        response.headers["Connection"] = "close"
        return response
    if frozen is None or request.method in SAFE_METHODS:
        return await call_next(request)
    retry_after = frozen.retry_after()
    later = "in a moment" if retry_after <= 5 else f"in about {retry_after} seconds"
    message = (
        f"Changes are paused for a moment because {frozen.reason}. Nothing was changed; "
        f"try again {later}."
    )
    headers = {"Retry-After": str(retry_after)}
    if _is_api(request):
        return error_json(503, "UnavailableError", message, headers)
    response = render(request, "error.html", status_code=503, message=message)
    response.headers.update(headers)
    return response


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_json(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.ServiceError)
    async def service_error(request: Request, error: errors.ServiceError) -> Response:
        status = status_of(error)
        headers = {}
        if isinstance(error, errors.ThrottledError):
            headers["Retry-After"] = str(max(1, round(error.retry_after)))
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if _is_api(request):
            return error_json(status, type(error).__name__, str(error), headers)
        return render(request, "error.html", status_code=status, message=str(error))

    @app.exception_handler(CsrfError)
    async def csrf(request: Request, error: CsrfError) -> Response:
        message = (
            "This form was not sent from this site, or it has expired. Nothing was changed; "
            "reload the page and try again."
        )
        return render(request, "error.html", status_code=403, message=message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        return error_json(
            400 if _is_json_error(error) else 422, "InvalidInputError", _describe(error)
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if _is_api(request):
            return error_json(error.status_code, "HTTPError", str(error.detail))
        return render(
            request, "error.html", status_code=error.status_code, message=str(error.detail)
        )


def _is_json_error(error: RequestValidationError) -> bool:
    return any(e.get("type") == "json_invalid" for e in error.errors())


def _describe(error: RequestValidationError) -> str:
    if _is_json_error(error):
        return (
            "The request body is not valid JSON; "
            "send a JSON object with Content-Type application/json."
        )
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return "The request was refused: " + "; ".join(parts) + "."
