"""What the supervisor asks of a worker, on the worker's private socket.

`POST /worker/go-live` opens the listeners (a worker started in standby serves
nothing until then) and ends every signed-in session (R5); `/worker/freeze`
and `/worker/thaw` pause and resume changes while an install snapshots and
migrates the database; `/worker/outcomes` writes finished installs to the
audit log. Every other path goes to the application itself, so the
supervisor's health check is the real `/check_health`. Each request must carry
the token the supervisor gave this worker.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.platform.runtime import Runtime

TOKEN_HEADER = b"x-bastion-worker-token"
GoLive = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class WorkerControl:
    """An ASGI app: the control paths, else the application."""

    def __init__(
        self,
        app: ASGIApp,
        runtime: Runtime,
        token: str,
        go_live: GoLive,
        audit_outcomes: Callable[[], int],
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.token = token.encode()
        self.go_live = go_live
        self.audit_outcomes = audit_outcomes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        if not hmac.compare_digest(headers.get(TOKEN_HEADER, b""), self.token):
            await _answer(send, 403, {"detail": "missing or wrong worker token"})
            return
        path = scope["path"]
        if not path.startswith("/worker/"):
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        if path == "/worker/go-live":
            await _answer(send, 200, await self.go_live(body))
        elif path == "/worker/freeze":
            self.runtime.frozen = str(body.get("reason") or "an update is being installed")
            await _answer(send, 200, {"frozen": self.runtime.frozen})
        elif path == "/worker/thaw":
            self.runtime.frozen = None
            await _answer(send, 200, {"frozen": None})
        elif path == "/worker/outcomes":
            audited = await asyncio.to_thread(self.audit_outcomes)
            await _answer(send, 200, {"audited": audited})
        else:
            await _answer(send, 404, {"detail": f"no control path {path}"})


async def _body(receive: Receive) -> dict[str, Any]:
    data = b""
    while True:
        message = await receive()
        data += message.get("body", b"")
        if not message.get("more_body"):
            break
    try:
        parsed = json.loads(data or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
