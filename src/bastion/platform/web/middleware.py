"""What wraps every request: the security headers on every answer, and changes paused
while an install snapshots and migrates the database.

Plain ASGI middleware rather than Starlette's `BaseHTTPMiddleware`, which spawns tasks
and streams for each request: on a busy machine that doubled the event loop's work per
request, and the loop is what answers health checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.platform.runtime import Pause
from bastion.platform.web import answers

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _on_start(send: Send, change: Callable[[MutableHeaders], None]) -> Send:
    """`send`, changing the headers of the answer as it starts."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = list(message.get("headers", []))
            change(MutableHeaders(scope=message))
        await send(message)

    return sending


class SecurityHeaders:
    """The security headers, and no-store unless the answer is a static file, on every
    answer that passes (a crash's answer gets them from `answers.crashed`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope["path"].startswith(answers.CACHEABLE_PREFIXES)

        def secure(headers: MutableHeaders) -> None:
            headers.update(answers.SECURITY_HEADERS)
            if not cacheable:
                headers["Cache-Control"] = "no-store"

        await self.app(scope, receive, _on_start(send, secure))


class ChangesGate:
    """During an install's snapshot and migration, reads go on and changes wait (503).

    Once the new version serves (this worker drains), a browser's change on a kept-open
    connection is sent back to be repeated on a new connection, which the new version
    accepts; every answer of a draining worker closes its connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        runtime: Any = scope["app"].state.runtime
        request = Request(scope, receive)
        changes = request.method not in SAFE_METHODS
        if runtime.draining:
            send = _on_start(send, _close)
            if runtime.frozen is not None and changes and not answers.is_api(request):
                await RedirectResponse(str(request.url), status_code=307)(scope, receive, send)
                return
        elif runtime.frozen is not None and changes:
            await _paused(request, runtime.frozen)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _close(headers: MutableHeaders) -> None:
    headers["Connection"] = "close"


def _paused(request: Request, frozen: Pause) -> Response:
    retry_after = frozen.retry_after()
    later = "in a moment" if retry_after <= 5 else f"in about {retry_after} seconds"
    message = (
        f"Changes are paused for a moment because {frozen.reason}. Nothing was changed; "
        f"try again {later}."
    )
    headers = {"Retry-After": str(retry_after)}
    return answers.error_answer(request, 503, "UnavailableError", message, headers)
