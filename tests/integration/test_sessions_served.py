"""A session's WebSocket ends on a real appliance process: the supervisor's sockets, the
worker's uvicorn listeners and their TLS, as served in production."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bastion.access_console import protocol as console
from bastion.agents.protocol import Codec, SessionHello
from tests.support.appliance import RunningAppliance, start_appliance

SESSION = "00000000-0000-4000-8000-000000000000"
TOKEN = "A" * 43


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    with start_appliance(tmp_path_factory.mktemp("sessions"), host="127.0.0.71") as running:
        yield running


async def _refusal(appliance: RunningAppliance, path: str, hello: str) -> tuple[int, str]:
    url = f"wss://{appliance.host}:{appliance.port}{path}"
    async with connect(url, ssl=appliance.tls(), open_timeout=10) as ws:
        await ws.send(hello)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code or 0, ws.close_reason or ""


def test_both_ends_upgrade_to_websockets_over_the_served_tls(appliance: RunningAppliance) -> None:
    agent = Codec().write(SessionHello(session_id=SESSION, client_id="jc_test", token=TOKEN))
    refused = asyncio.run(_refusal(appliance, f"/agent/v1/sessions/{SESSION}", agent))
    assert refused == (1008, "there is no such session live on this appliance")
    hello = console.write(console.ConsoleHello(token=TOKEN))
    terminal = f"{console.CONSOLE_API}/sessions/{SESSION}/terminal"
    assert asyncio.run(_refusal(appliance, terminal, hello))[0] == 1008
    oversized = "x" * (200 * 1024)
    assert asyncio.run(_refusal(appliance, terminal, oversized))[0] == 1009
    assert "Traceback" not in appliance.log()


def test_the_console_signs_in_and_reads_about(appliance: RunningAppliance, tmp_path: Path) -> None:
    with appliance.client() as client:
        about = console.About.model_validate(client.get(f"{console.CONSOLE_API}/about").json())
        first = client.post(
            f"{console.CONSOLE_API}/sign-in", json={"username": "admin", "password": "password"}
        )
    assert about.site_build and about.site_version
    assert first.status_code == 403 and "new password" in first.json()["error"]["message"]
