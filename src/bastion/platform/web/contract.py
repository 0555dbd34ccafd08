"""The API's OpenAPI schema, completed with what every operation shares.

Each operation declares the errors particular to it (`schemas.errors(404, 409)`); this
module adds those every operation of a kind can give, in the one error body:

- 422 (a parameter or body field refused) wherever there is something to validate,
  described by `ErrorBody` instead of FastAPI's own shape;
- 400 where a JSON body is read (it may not be JSON at all);
- 401 where a bearer token is needed;
- 503 on every change (changes pause while an install snapshots and migrates).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import BaseRoute

from bastion.platform.web.schemas import ERROR_MEANINGS, ErrorBody, ErrorDetail

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    }
}
DESCRIPTION = (
    "The appliance's JSON API. Trade an API client's id and secret for a bearer token at "
    "`POST /api/v1/oauth/token` (OAuth 2 client credentials) and send it as "
    "`Authorization: Bearer <token>`. Every error has the body "
    '`{"error": {"type": ..., "message": ...}}`; the message says what to do.'
)


_built: dict[tuple[object, ...], dict[str, Any]] = {}
"""Schemas made in this process, by the app's title, version and routes: building one takes
over half a second, and an install's new worker builds it before it is told to begin
(changes are paused from then until it answers its health check)."""


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return the completed schema (built once per process)."""
    app.openapi = _builder(app)  # type: ignore[method-assign]


def _builder(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            shown = (r for r in app.routes if getattr(r, "include_in_schema", True))
            key = (app.title, app.version, *(_route_key(r) for r in shown))
            schema = _built.get(key)
            if schema is None:
                schema = get_openapi(
                    title=app.title, version=app.version, description=DESCRIPTION, routes=app.routes
                )
                complete(schema)
                _built[key] = schema
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def _route_key(route: BaseRoute) -> tuple[object, ...]:
    """What of a route goes into the schema: the same endpoint at the same path."""
    methods = tuple(sorted(getattr(route, "methods", None) or ()))
    return (getattr(route, "path", ""), methods, getattr(route, "endpoint", None))


def complete(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorBody"] = ErrorBody.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components["ErrorBody"].pop("$defs", None)
    components["ErrorDetail"] = ErrorDetail.model_json_schema()
    for methods in schema.get("paths", {}).values():
        for method, operation in methods.items():
            _complete_operation(method, operation)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def _complete_operation(method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "422" in responses or operation.get("parameters") or "requestBody" in operation:
        _add(responses, 422, replace=True)
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        _add(responses, 400)
    if operation.get("security"):
        _add(responses, 401)
    if method != "get":
        _add(responses, 503, headers=RETRY_AFTER)
    if "429" in responses:
        responses["429"].setdefault("headers", RETRY_AFTER)


def _add(
    responses: dict[str, Any],
    status: int,
    *,
    replace: bool = False,
    headers: dict[str, Any] | None = None,
) -> None:
    key = str(status)
    if key in responses and not replace:
        return
    described = responses.get(key, {}).get("description") if replace else None
    answer: dict[str, Any] = {
        "description": described if described and described != "Validation Error" else "",
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    answer["description"] = answer["description"] or ERROR_MEANINGS[status]
    if headers:
        answer["headers"] = headers
    responses[key] = answer
