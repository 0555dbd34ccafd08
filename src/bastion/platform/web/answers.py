"""Every error the appliance answers, in one shape: the API's JSON error body
(`{"error": {"type", "message"}}`) under `/api/`, the error page everywhere else, with
the security headers and `Cache-Control: no-store` on all of them, a crash (500) too."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from functools import lru_cache

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from bastion.platform import errors
from bastion.platform.web.csrf import CsrfError
from bastion.platform.web.errors import status_of
from bastion.platform.web.templating import render

log = logging.getLogger("bastion.web")

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}
CACHEABLE_PREFIXES = ("/static/",)
"""Files the same for everyone; every other answer may carry a secret (a session, a token,
a client secret, a private key, a backup) and is never stored by a browser or a proxy."""


def secure(response: Response, path: str) -> Response:
    """The security headers, and `no-store` unless the answer is a static file."""
    response.headers.update(SECURITY_HEADERS)
    if not path.startswith(CACHEABLE_PREFIXES):
        response.headers["Cache-Control"] = "no-store"
    return response


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_json(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status, headers=headers)


def error_answer(
    request: Request,
    status: int,
    kind: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The API's error body, or the error page."""
    if is_api(request):
        return error_json(status, kind, message, headers)
    response = render(request, "error.html", status_code=status, message=message)
    response.headers.update(headers or {})
    return response


async def service_error(request: Request, error: errors.ServiceError) -> Response:
    status = status_of(error)
    headers = {}
    if isinstance(error, errors.ThrottledError):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    if status == 401 and is_api(request):
        headers["WWW-Authenticate"] = "Bearer"
    return error_answer(request, status, type(error).__name__, str(error), headers)


async def csrf_refused(request: Request, error: CsrfError) -> Response:
    message = (
        "This form was not sent from this site, or it has expired. Nothing was changed; "
        "reload the page and try again."
    )
    return error_answer(request, 403, "CsrfError", message)


async def invalid_request(request: Request, error: RequestValidationError) -> Response:
    status = 400 if _is_json_error(error) else 422
    return error_answer(request, status, "InvalidInputError", describe(error))


async def http_error(request: Request, error: StarletteHTTPException) -> Response:
    """Not found, method not allowed (with every method the path takes in Allow)..."""
    headers, message = dict(error.headers or {}), str(error.detail)
    if error.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
        message = f"{request.url.path} does not take {request.method}; it takes {headers['Allow']}."
    if error.status_code == 404:
        message = f"There is nothing at {request.url.path}; check the address."
    kind = "NotFoundError" if error.status_code == 404 else "HTTPError"
    return error_answer(request, error.status_code, kind, message, headers)


async def database_busy(request: Request, error: PoolTimeoutError) -> Response:
    message = "The appliance is too busy to reach its database just now; try again shortly."
    return error_answer(request, 503, "UnavailableError", message, {"Retry-After": "5"})


async def crashed(request: Request, error: Exception) -> Response:
    """A bug or a broken part: the answer says so without details, which go to the log.

    The server closes the connection after such an answer (the error goes on up to it
    to be logged): the answer says so, or a client keeping its connection would send
    its next request on the closed one and fail without an answer."""
    reference = uuid.uuid4().hex[:12]
    log.error("request %s %s failed (reference %s)", request.method, request.url.path, reference)
    message = (
        f"The appliance failed to answer this request (reference {reference}); nothing was "
        "changed by it. The appliance's log has the details under that reference."
    )
    try:
        response = error_answer(request, 500, "InternalError", message)
    except Exception:  # the error page itself failed: answer in plain text
        response = PlainTextResponse(message, 500)
    response.headers["Connection"] = "close"
    return secure(response, request.url.path)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of this path takes (FastAPI makes one route per method)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        if route.path and route.methods and _pattern(route.path).match(request.url.path):
            methods |= route.methods
    return sorted(methods)


@lru_cache(maxsize=512)
def _pattern(path: str) -> re.Pattern[str]:
    return compile_path(path)[0]


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.ServiceError, service_error)  # type: ignore[arg-type]
    app.add_exception_handler(CsrfError, csrf_refused)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(PoolTimeoutError, database_busy)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, crashed)


def _is_json_error(error: RequestValidationError) -> bool:
    return any(e.get("type") == "json_invalid" for e in error.errors())


def describe(error: RequestValidationError) -> str:
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
