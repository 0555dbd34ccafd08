"""`/check_health` answers 503 whenever the appliance cannot serve."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bastion.entrypoints import compose
from bastion.entrypoints.serving import initialise
from bastion.entrypoints.web import create_app
from bastion.network.listeners import UvicornListeners
from bastion.platform.db.engine import make_engine
from bastion.platform.settings import ApplianceSettings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> ApplianceSettings:
    return ApplianceSettings(data_dir=tmp_path, password_hash_fast=True, ntp_server_default="")


async def health(app: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://appliance") as client:
        return await client.get("/check_health")


async def test_health_is_503_until_the_appliance_serves(settings: ApplianceSettings) -> None:
    runtime = compose.build(settings)
    initialise(runtime)
    compose.add_network(runtime, UvicornListeners(None))
    app = create_app(runtime)
    starting = await health(app)
    assert starting.status_code == 503 and starting.json()["status"] == "starting"
    runtime.serving = True
    assert (await health(app)).status_code == 200
    runtime.serving, runtime.stopping = False, True
    stopping = await health(app)
    assert stopping.status_code == 503 and stopping.json()["status"] == "stopping"


async def test_health_is_503_when_the_database_is_gone(settings: ApplianceSettings) -> None:
    initialise(compose.build(settings))
    broken = make_engine(f"sqlite:///{settings.data_dir}/missing-dir/x.sqlite")
    runtime = compose.build(settings, broken)
    compose.add_network(runtime, UvicornListeners(None))
    runtime.serving = True
    response = await health(create_app(runtime))
    assert response.status_code == 503 and response.json()["status"] == "database unavailable"
