"""The appliance's ASGI app: `/login` and `/appliance` pages, `/api/v1`, health and metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion import release
from bastion.adapters.web import (
    api,
    api_backups,
    api_certificates,
    api_updates,
    health,
    pages_appliance,
    pages_certificates,
    pages_login,
    pages_management,
    pages_updates,
)
from bastion.adapters.web.deps import CsrfError, PasswordChangeRequiredError, SignInRequiredError
from bastion.adapters.web.errors import status_of
from bastion.adapters.web.runtime import Runtime
from bastion.adapters.web.templating import render
from bastion.services import errors, installs

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="Bastion appliance API",
        version=release.site_version(),
        docs_url="/api/v1/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.runtime = runtime
    app.state.metrics = health.Metrics(runtime)
    app.middleware("http")(app.state.metrics.middleware)
    app.middleware("http")(_refuse_changes_while_frozen)
    app.middleware("http")(_security_headers)
    routers = (
        health.router,
        api.router,
        api_backups.router,
        api_certificates.router,
        pages_login.router,
        pages_management.router,
        pages_appliance.router,
        pages_certificates.router,
        pages_updates.router,
        api_updates.router,
    )
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(pages_login.STATIC_DIR)), name="static")
    _install_error_handlers(app)
    return app


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
    message = (
        f"Changes are paused for a moment because {frozen}. Nothing was changed; "
        "try again in a minute."
    )
    headers = {"Retry-After": "30"}
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

    @app.exception_handler(SignInRequiredError)
    async def sign_in_required(request: Request, error: SignInRequiredError) -> Response:
        reason = "&ended=1" if error.message else ""
        if installs.SWITCH_REASON in error.message:
            reason = "&ended=update"
        return RedirectResponse(f"/login?next={error.next_url}{reason}", status_code=303)

    @app.exception_handler(PasswordChangeRequiredError)
    async def password_change(request: Request, error: PasswordChangeRequiredError) -> Response:
        return RedirectResponse("/login/change-password", status_code=303)

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
