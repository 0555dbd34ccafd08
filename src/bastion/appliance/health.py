"""`/check_health` for load balancers and the failover peer, and Prometheus `/metrics`."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.accounts import sign_in
from bastion.accounts.deps import principal_from_header
from bastion.accounts.service import AccountsSetup
from bastion.failover import shared_ips
from bastion.failover.service import FailoverSetup
from bastion.platform import build
from bastion.platform.db.engine import database_size_bytes
from bastion.platform.runtime import Runtime
from bastion.platform.web import answers
from bastion.platform.web.deps import RuntimeDep, UowDep
from bastion.platform.web.routing import Router

router = Router(include_in_schema=False)


PING_TIMEOUT_SECONDS = 5.0
ANSWER_KEPT_SECONDS = 0.05
"""How long a health check may answer from the database's last yes without asking it."""
HEALTH = "/check_health"


class HealthProbe:
    """Reaches the database on a thread of its own, so that health answers even while every
    shared worker thread is busy (a flood of sign-ins or page loads).

    Health checks that arrive while a question is out share its answer, and a yes is kept
    for `ANSWER_KEPT_SECONDS`: a load balancer polling hard costs at most one database
    round trip at a time and twenty a second, however often it asks, and most of its
    checks are answered without leaving the event loop. A no is never kept: the check
    after it asks again.
    """

    def __init__(self, runtime: Runtime, clock: Callable[[], float] = time.monotonic) -> None:
        self._runtime, self._clock = runtime, clock
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="health")
        self._asking: asyncio.Future[bool] | None = None
        self._answered_yes_at = -math.inf

    async def database_answers(self) -> bool:
        """Whether the database answered within the last `ANSWER_KEPT_SECONDS`, or answers
        within `PING_TIMEOUT_SECONDS` of the question that this call shares."""
        if self._clock() - self._answered_yes_at < ANSWER_KEPT_SECONDS:
            return True
        if self._asking is None:
            loop = asyncio.get_running_loop()
            answer: asyncio.Future[bool] = loop.create_future()
            late = loop.call_later(PING_TIMEOUT_SECONDS, _settle, answer, False)
            asked = loop.run_in_executor(self._thread, self._ping)

            def pinged(done: asyncio.Future[bool]) -> None:
                late.cancel()
                failed = done.cancelled() or done.exception() is not None
                _settle(answer, not failed and done.result())

            asked.add_done_callback(pinged)
            answer.add_done_callback(self._answered)
            self._asking = answer
        return await asyncio.shield(self._asking)

    def _answered(self, asked: asyncio.Future[bool]) -> None:
        self._asking = None
        if not asked.cancelled() and asked.result():
            self._answered_yes_at = self._clock()

    def _ping(self) -> bool:
        try:
            with self._runtime.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:  # any failure to reach the database is "unavailable"
            return False
        return True


def _settle(answer: asyncio.Future[bool], value: bool) -> None:
    if not answer.done():
        answer.set_result(value)


@router.get(HEALTH)
async def check_health(request: Request, runtime: RuntimeDep) -> JSONResponse:
    status, body = await health_answer(runtime, request.app.state.health)
    return JSONResponse(body, status_code=status)


async def health_answer(runtime: Runtime, probe: HealthProbe) -> tuple[int, dict[str, object]]:
    """The status and body of `/check_health`: 200 while this worker serves and its
    database answers, 503 with the reason otherwise."""
    setup = runtime.part(FailoverSetup)
    pair = setup.pair()
    held = (
        await run_in_threadpool(shared_ips.enabled_recently, setup.shared_ips)
        if setup.shared_ips
        else []
    )
    body: dict[str, object] = {
        "version": build.site_version(),
        "failover_role": pair.role.value,
        "enabled_shared_ips": held,
        "last_data_sync_time": pair.last_sync_time or None,
        "last_data_sync_status": pair.last_sync_status or None,
        "status": "ok",
    }
    if not runtime.serving:
        body["status"] = "stopping" if runtime.stopping else "starting"
        return 503, body
    if not await probe.database_answers():
        body["status"] = "database unavailable"
        return 503, body
    return 200, body


_JSON = JSONResponse(None)
"""Renders a body as every JSON answer does."""


def _answer_headers() -> list[tuple[bytes, bytes]]:
    """The headers of a JSON answer that passed the app's middleware, as raw pairs."""
    headers = answers.secure(JSONResponse(None), HEALTH).raw_headers
    return [(k, v) for k, v in headers if k != b"content-length"]


class Metrics:
    """The appliance's own registry, so that two apps in one process do not collide."""

    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bastion_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bastion_http_request_duration_seconds",
            "Time to answer",
            ["method", "route"],
            registry=self.registry,
        )
        signed_in = Gauge("bastion_signed_in_users", "Active web sessions", registry=self.registry)
        signed_in.set_function(lambda: _signed_in(runtime))
        size = Gauge("bastion_database_size_bytes", "Stored data", registry=self.registry)
        size.set_function(lambda: database_size_bytes(runtime.engine))
        self.registry.register(DatabaseTurns(runtime))

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Counts and times every answer by method, route and status (a crash as 500)."""

        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started, status = time.perf_counter(), 500

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                name = getattr(scope.get("route"), "path", "unmatched")
                self.latency.labels(scope["method"], name).observe(time.perf_counter() - started)
                self.requests.labels(scope["method"], name, str(status)).inc()

        return measured

    def health_ahead(self, app: FastAPI) -> ASGIApp:
        """`app`, with `GET /check_health` answered ahead of it (its middleware, routing
        and dependencies) with the same answer and headers: a load balancer polls it hard,
        and it is the measure of whether the appliance keeps up. A draining worker's
        answers also close their connection, so there it takes the usual way."""
        runtime: Runtime = app.state.runtime
        probe: HealthProbe = app.state.health
        head = _answer_headers()
        latency = self.latency.labels("GET", HEALTH)
        answered = {code: self.requests.labels("GET", HEALTH, str(code)) for code in (200, 503)}

        async def ahead(scope: Scope, receive: Receive, send: Send) -> None:
            if (
                scope["type"] != "http"
                or scope["path"] != HEALTH
                or scope["method"] != "GET"
                or runtime.draining
            ):
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            try:
                status, body = await health_answer(runtime, probe)
            except Exception:  # the usual way answers and logs it as it does every crash
                await app(scope, receive, send)
                return
            content = _JSON.render(body)
            length = (b"content-length", str(len(content)).encode())
            start = {"type": "http.response.start", "status": status, "headers": [length, *head]}
            await send(start)
            await send({"type": "http.response.body", "body": content})
            latency.observe(time.perf_counter() - started)
            counter = answered.get(status) or self.requests.labels("GET", HEALTH, str(status))
            counter.inc()

        return ahead


class DatabaseTurns:
    """How this worker's requests take turns at the database (`platform.admission`), read
    from the runtime's admission at each scrape. The scrape itself holds a turn while it
    is answered."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        turns = self._runtime.database_requests
        yield GaugeMetricFamily(
            "bastion_database_requests_running",
            "Requests within their turn at the database",
            value=turns.busy,
        )
        yield GaugeMetricFamily(
            "bastion_database_requests_outlasting",
            "Requests still inside after their turn ended (waiting on a peer, a lock, an upload)",
            value=turns.admitted - turns.busy,
        )
        yield GaugeMetricFamily(
            "bastion_database_requests_waiting",
            "Requests waiting for a turn at the database",
            value=turns.waiting,
        )
        yield CounterMetricFamily(
            "bastion_database_requests_outlasted",
            f"Requests that held their turn longer than {turns.quick_for * 1000:g} ms "
            "and let the next one in",
            value=turns.outlasted,
        )


def _signed_in(runtime: Runtime) -> float:
    limits = runtime.part(AccountsSetup).session_limits
    with runtime.uow() as uow:
        return float(sign_in.active_session_count(uow, limits))


@router.get("/metrics")
def metrics(request: Request, uow: UowDep) -> Response:
    """Scraped with an API client's bearer token, like every other read of site data."""
    principal_from_header(request, uow)
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
