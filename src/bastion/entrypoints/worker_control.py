"""The orders the supervisor gives a worker, on the worker's private socket
(`bastion.supervisor.messages`): go live (a worker started in standby serves
nothing until then; at an install's switch everyone is signed out, R5), freeze and
thaw changes while an install snapshots and migrates the database, audit finished
installs, serve the default certificate a console command chose; as a worker an install
replaced: retire, list the sessions it keeps, say whether it keeps one, end one, give a
ticket to watch one. Every other path
goes to the application itself, so the supervisor's health check is the real
`/check_health`. Each request must carry the token the supervisor gave this worker.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.certificates.site import SiteCertificates
from bastion.installs import rules as install_rules
from bastion.platform.db.engine import database_size_bytes
from bastion.platform.errors import ConflictError, NotFoundError
from bastion.platform.runtime import Pause, Runtime
from bastion.sessions.relay import Rendezvous
from bastion.sessions.watching import live_info
from bastion.supervisor import messages

TOKEN_HEADER = b"x-bastion-worker-token"
GoLiveHandler = Callable[[messages.GoLive], Awaitable[messages.WentLive]]
RetireHandler = Callable[[messages.Retire], int]
"""Start retiring this worker; the number of sessions it keeps meanwhile."""


class WorkerControl:
    """An ASGI app: the control paths, else the application."""

    def __init__(
        self,
        app: ASGIApp,
        runtime: Runtime,
        token: str,
        go_live: GoLiveHandler,
        audit_outcomes: Callable[[], int],
        retire: RetireHandler,
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.token = token.encode()
        self.go_live = go_live
        self.audit_outcomes = audit_outcomes
        self.retire = retire

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        if not hmac.compare_digest(headers.get(TOKEN_HEADER, b""), self.token):
            await _answer(send, 403, {"detail": "missing or wrong worker token"})
            return
        if not scope["path"].startswith("/worker/"):
            await self.app(scope, receive, send)
            return
        try:
            order = messages.order_from_wire(scope["path"], await _body(receive))
        except messages.MessageError as error:
            await _answer(send, 404, {"detail": str(error)})
            return
        await _answer(send, 200, await self.carry_out(order))

    async def carry_out(self, order: messages.Order) -> dict[str, Any]:
        if isinstance(order, messages.GoLive):
            return (await self.go_live(order)).to_wire()
        if isinstance(order, messages.Freeze):
            expected = install_rules.pause_seconds(await asyncio.to_thread(self._database_bytes))
            self.runtime.frozen = Pause(order.reason, time.monotonic() + expected)
            return {"frozen": order.reason, "expected_seconds": round(expected, 1)}
        if isinstance(order, messages.Thaw):
            self.runtime.frozen = None
            return {"frozen": None}
        if isinstance(order, messages.AuditOutcomes):
            return {"audited": await asyncio.to_thread(self.audit_outcomes)}
        if isinstance(order, messages.Retire):
            return {"kept": self.retire(order)}
        if isinstance(order, messages.EndSession):
            rendezvous = self.runtime.part(Rendezvous)
            return {"ended": await rendezvous.end_session(order.session_id, order.reason)}
        if isinstance(order, messages.WatchTicket):
            return self._watch_ticket(order.session_id)
        if isinstance(order, messages.HoldsSession):
            live = self.runtime.part(Rendezvous).live.get(order.session_id)
            return {"held": live is not None and not live.ended}
        if isinstance(order, messages.LiveSessions):
            in_progress = self.runtime.part(Rendezvous).in_progress()
            return {"sessions": [live_info(s).model_dump(mode="json") for s in in_progress]}
        await asyncio.to_thread(self.runtime.part(SiteCertificates).serve_default)
        return {"served": True}

    def _watch_ticket(self, session_id: str) -> dict[str, Any]:
        """A ticket to watch a session live here; none (and why, if it is here but may not
        be watched now) otherwise."""
        try:
            return {"token": self.runtime.part(Rendezvous).watch_ticket(session_id)}
        except NotFoundError:
            return {"token": None}
        except ConflictError as error:
            return {"token": None, "refused": str(error)}

    def _database_bytes(self) -> int:
        """What the install's snapshot copies; 0 if the database cannot say."""
        try:
            return database_size_bytes(self.runtime.engine)
        except (OSError, SQLAlchemyError):
            return 0


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
