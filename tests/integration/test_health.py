"""`/check_health` answers 503 whenever the appliance cannot serve, and the listeners'
way to it (ahead of the app's middleware and routing) answers exactly as the route does."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import generate_latest
from starlette.types import Receive, Scope, Send

from bastion.appliance import health as health_module
from bastion.appliance.health import HealthProbe
from bastion.entrypoints import compose
from bastion.entrypoints.serving import initialise
from bastion.entrypoints.web import create_app, served
from bastion.network.listeners import UvicornListeners
from bastion.platform.admission import Admission
from bastion.platform.db.engine import make_engine
from bastion.platform.runtime import Runtime
from bastion.platform.settings import ApplianceSettings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> ApplianceSettings:
    return ApplianceSettings(data_dir=tmp_path, password_hash_fast=True, ntp_server_default="")


def initialised(settings: ApplianceSettings) -> Runtime:
    """The site's runtime with its database set up, as a worker has it before it serves."""
    runtime = compose.build(settings)
    initialise(runtime)
    compose.add_network(runtime, UvicornListeners(None))
    return runtime


async def health(app: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://appliance") as client:
        return await client.get("/check_health")


async def both_ways(app: FastAPI) -> httpx.Response:
    """The route's answer, after checking that the served way gives the same one."""
    usual, ahead = await health(app), await health(served(app))
    assert (ahead.status_code, ahead.json()) == (usual.status_code, usual.json())
    assert ahead.headers.items() == usual.headers.items()
    return usual


async def test_health_is_503_until_the_appliance_serves(settings: ApplianceSettings) -> None:
    runtime = initialised(settings)
    app = create_app(runtime)
    starting = await both_ways(app)
    assert starting.status_code == 503 and starting.json()["status"] == "starting"
    runtime.serving = True
    assert (await both_ways(app)).status_code == 200
    runtime.serving, runtime.stopping = False, True
    stopping = await both_ways(app)
    assert stopping.status_code == 503 and stopping.json()["status"] == "stopping"


async def test_health_is_503_when_the_database_is_gone(settings: ApplianceSettings) -> None:
    initialise(compose.build(settings))
    broken = make_engine(f"sqlite:///{settings.data_dir}/missing-dir/x.sqlite")
    runtime = compose.build(settings, broken)
    compose.add_network(runtime, UvicornListeners(None))
    runtime.serving = True
    response = await both_ways(create_app(runtime))
    assert response.status_code == 503 and response.json()["status"] == "database unavailable"


async def test_the_served_way_counts_its_answers_and_leaves_a_draining_worker_to_the_app(
    settings: ApplianceSettings,
) -> None:
    runtime = initialised(settings)
    runtime.serving = True
    app = create_app(runtime)
    usual = await health(app)  # builds the app's middleware stack

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError(f"the app was asked for {scope['path']}")

    app.middleware_stack, stack = refuse, app.middleware_stack
    for _ in range(3):
        assert (await health(served(app))).status_code == 200  # answered ahead of the app
    app.middleware_stack = stack
    assert usual.status_code == 200
    counted = generate_latest(app.state.metrics.registry).decode()
    assert 'bastion_http_requests_total{method="GET",route="/check_health",status="200"} 4.0' in (
        counted
    )
    runtime.draining = True  # an install's switch: every answer closes its connection
    assert (await health(served(app))).headers["connection"] == "close"
    posted = await _post_health(served(app))
    assert posted.status_code == 405  # only GET is answered ahead; the rest as the app does


async def _post_health(app: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://appliance") as client:
        return await client.post("/check_health")


async def test_health_checks_together_share_one_question_and_a_hung_one_is_unavailable(
    settings: ApplianceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[float] = []
    release = threading.Event()

    class Probe(HealthProbe):
        def _ping(self) -> bool:
            asked.append(time.monotonic())
            return release.wait(10)  # a database that hangs until released

    monkeypatch.setattr(health_module, "PING_TIMEOUT_SECONDS", 0.3)
    probe = Probe(compose.build(settings))
    started = time.monotonic()
    answers = await asyncio.gather(*(probe.database_answers() for _ in range(20)))
    assert answers == [False] * 20 and len(asked) == 1
    assert 0.25 < time.monotonic() - started < 2
    release.set()
    assert await probe.database_answers() is True  # the next question, once it answers


async def test_metrics_show_how_requests_take_turns_at_the_database(
    settings: ApplianceSettings,
) -> None:
    runtime = initialised(settings)
    registry = create_app(runtime).state.metrics.registry
    turns = Admission(total=10, running=2, quick_for=0.5)  # wide margins for a busy machine
    runtime.database_requests = turns

    def scraped() -> dict[str, float | None]:
        names = ("running", "outlasting", "waiting", "outlasted_total")
        return {n: registry.get_sample_value(f"bastion_database_requests_{n}") for n in names}

    release = asyncio.Event()

    async def hold() -> None:
        async with turns.turn():
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert scraped() == {"running": 2, "outlasting": 0, "waiting": 1, "outlasted_total": 0}
    await asyncio.sleep(0.7)  # the two inside outlast their turn; the third is let in
    assert scraped() == {"running": 1, "outlasting": 2, "waiting": 0, "outlasted_total": 2}
    release.set()
    await asyncio.gather(*holders)
    assert scraped() == {"running": 0, "outlasting": 0, "waiting": 0, "outlasted_total": 2}
