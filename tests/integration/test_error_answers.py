"""The platform's one error shape, on the platform's own app with routes that fail for
real: a crash answers 500 in the API's error body (or the error page) with the security
headers and no-store; a page refused by validation gets the error page, not JSON."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Query
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from bastion.entrypoints import compose
from bastion.network.listeners import UvicornListeners
from bastion.platform.settings import ApplianceSettings
from bastion.platform.web.answers import SECURITY_HEADERS
from bastion.platform.web.app import create_app
from bastion.supervisor.sockets import ListenAddress
from tests.support.appliance import free_port
from tests.support.pki import TestCa

pytestmark = pytest.mark.anyio
HOST = "127.0.0.1"

failing = APIRouter()


@failing.get("/api/v1/broken")
def broken_api() -> None:
    raise RuntimeError("a bug")


@failing.get("/login/broken")
def broken_page() -> None:
    raise KeyError("a bug")


@failing.get("/login/numbered")
def numbered_page(page: Annotated[int, Query(ge=1, le=10)] = 1) -> dict[str, int]:
    return {"page": page}


@failing.get("/api/v1/pool")
def pool_exhausted() -> None:
    raise PoolTimeoutError("QueuePool limit of size 5 overflow 10 reached")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    runtime = compose.build(ApplianceSettings(data_dir=tmp_path, ntp_server_default=""))
    app = create_app(runtime, [failing])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://appliance") as client:
        yield client
    runtime.engine.dispose()


def assert_secured(answer: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value
    assert answer.headers["cache-control"] == "no-store"


async def test_a_crash_in_the_api_answers_500_in_the_error_body(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/v1/broken")
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["type"] == "InternalError" and "reference" in error["message"]
    assert "a bug" not in answer.text
    assert_secured(answer)


async def test_a_crash_on_a_page_answers_the_error_page(client: httpx.AsyncClient) -> None:
    answer = await client.get("/login/broken")
    assert answer.status_code == 500 and "text/html" in answer.headers["content-type"]
    assert 'id="error-message"' in answer.text and "a bug" not in answer.text
    assert_secured(answer)


async def test_a_page_refused_by_validation_shows_the_error_page(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/login/numbered", params={"page": str(10**21)})
    assert answer.status_code == 422 and "text/html" in answer.headers["content-type"]
    assert "page" in answer.text and "less than or equal to 10" in answer.text
    assert_secured(answer)


async def test_an_exhausted_database_pool_is_503_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/api/v1/pool")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json()["error"]["type"] == "UnavailableError"
    assert_secured(answer)


async def test_a_crash_closes_its_connection_and_says_so(tmp_path: Path) -> None:
    """Over the appliance's own listeners: the server closes a connection whose request
    crashed, so the answer says `Connection: close`, and a client that keeps its
    connections goes on with a new one instead of failing on the closed one."""
    runtime = compose.build(ApplianceSettings(data_dir=tmp_path, ntp_server_default=""))
    ca = TestCa()
    issued = ca.issue([HOST])
    chain = tmp_path / "server.pem"
    chain.write_bytes(issued.certificate_pem() + issued.key_pem())
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(chain)
    listeners = UvicornListeners(server_tls)
    listeners.attach(create_app(runtime, [failing]))
    port = free_port(HOST)
    await listeners.open(ListenAddress(HOST, port))
    tls = ssl.create_default_context(cadata=ca.pem().decode())
    try:
        async with httpx.AsyncClient(base_url=f"https://{HOST}:{port}", verify=tls) as client:
            for _ in range(20):
                crashed = await client.get("/api/v1/broken")
                assert crashed.status_code == 500
                assert crashed.headers["connection"] == "close"
                assert (await client.get("/login/numbered")).json() == {"page": 1}
    finally:
        await listeners.close_all(at_once=True)
        runtime.engine.dispose()
