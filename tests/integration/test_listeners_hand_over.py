"""An install's switch on the listeners, over real TLS: two servers (the old worker's
and the new one's) accept on the same listening socket, as the supervisor's workers do.
Once the old one hands over, a client's pooled keep-alive connection must not reach the
old version again: its next request is answered by the new one."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.network.listeners import UvicornListeners
from bastion.supervisor.sockets import ListenAddress, bind
from tests.support.appliance import free_port
from tests.support.pki import TestCa

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
HOST = "127.0.0.1"


def version_app(version: str, hold: asyncio.Event | None = None) -> Callable[..., Any]:
    """Answers every request with `version`; `/slow` first waits for `hold`."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow" and hold is not None:
            await hold.wait()
        body = version.encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


class Switch:
    """The old version serving, and a way to start the new one on the same socket."""

    def __init__(self, tmp: Path) -> None:
        ca = TestCa()
        chain = tmp / "server.pem"
        issued = ca.issue([HOST])
        chain.write_bytes(issued.certificate_pem() + issued.key_pem())
        self.server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_tls.load_cert_chain(chain)
        self.client_tls = ssl.create_default_context(cadata=ca.pem().decode())
        self.address = ListenAddress(HOST, free_port(HOST))
        self.socket = bind(self.address)
        self.hold = asyncio.Event()
        self.old = self.listeners("1.0.0")
        self.new: UvicornListeners | None = None

    def listeners(self, version: str) -> UvicornListeners:
        listeners = UvicornListeners(self.server_tls, lambda _address: self.socket.dup())
        listeners.attach(version_app(version, self.hold))
        return listeners

    async def start_new(self) -> None:
        self.new = self.listeners("1.1.0")
        await self.new.open(self.address)

    def client(self) -> httpx.AsyncClient:
        url = f"https://{HOST}:{self.address.port}"
        return httpx.AsyncClient(base_url=url, verify=self.client_tls, timeout=10)

    async def close(self) -> None:
        for listeners in (self.old, self.new):
            if listeners is not None:
                await listeners.close_all(at_once=True)
        self.socket.close()


@pytest.fixture
async def switch(tmp_path: Path) -> AsyncIterator[Switch]:
    switch = Switch(tmp_path)
    await switch.old.open(switch.address)
    try:
        yield switch
    finally:
        switch.hold.set()
        await switch.close()


async def test_a_pooled_connection_reaches_the_new_version_once_the_old_hands_over(
    switch: Switch,
) -> None:
    async with switch.client() as client:
        assert (await client.get("/")).text == "1.0.0"  # the connection stays in the pool
        await switch.start_new()
        switch.old.hand_over()
        answers = [(await client.get("/")).text for _ in range(5)]
    assert answers == ["1.1.0"] * 5


async def test_a_request_in_progress_at_the_hand_over_is_answered_then_its_connection_closes(
    switch: Switch,
) -> None:
    async with switch.client() as client:
        slow = asyncio.create_task(client.get("/slow"))
        await asyncio.sleep(0.3)  # the request reached the old version and waits there
        await switch.start_new()
        switch.old.hand_over()
        switch.hold.set()
        answered = await slow
        assert (answered.status_code, answered.text) == (200, "1.0.0")
        assert answered.headers.get("connection") == "close"
        assert (await client.get("/")).text == "1.1.0"


async def test_a_connection_that_has_asked_nothing_yet_keeps_its_grace(switch: Switch) -> None:
    """Accepted just before the hand-over, it may still send its first request: closing it
    at once would fail a client that did nothing wrong."""
    reader, writer = await asyncio.open_connection(
        HOST, switch.address.port, ssl=switch.client_tls, server_hostname=HOST
    )
    try:
        await asyncio.sleep(0.2)  # accepted by the old version, nothing sent
        switch.old.hand_over()
        writer.write(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"1.0.0")
