"""More authenticated API requests at once than the worker has threads and database
connections together, over the appliance's own listeners (uvicorn, real TLS).

A request that held its database connection while it waited for a worker thread could
leave every thread waiting for a connection and every connection waiting for a thread:
the site stopped answering until the pool's checkout timeout (30 s) failed them all.
The site now admits as many requests with a unit of work as the pool can serve; the
others wait their turn on the event loop."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
import httpx
import pytest

from bastion.accounts import api_clients
from bastion.accounts.service import AccountsSetup
from bastion.entrypoints import compose
from bastion.entrypoints.serving import initialise
from bastion.entrypoints.web import create_app
from bastion.network.listeners import UvicornListeners
from bastion.platform.principals import Actor
from bastion.platform.settings import ApplianceSettings
from bastion.supervisor.sockets import ListenAddress
from tests.support.appliance import free_port
from tests.support.pki import TestCa

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
HOST = "127.0.0.1"
SITE = "concurrency.example.test"
WITHIN = 20.0
"""Seconds all the requests have; well under the pool's 30 s checkout timeout."""


@dataclass(frozen=True)
class Site:
    port: int
    tls: ssl.SSLContext
    authorization: str
    connections: int
    """The most database connections the site's pool gives out at once."""


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    """The site's web app on the appliance's own listeners, and an API client's token."""
    settings = ApplianceSettings(
        data_dir=tmp_path / "appliance",
        hostname=SITE,
        listen=["127.0.0.1:8443"],
        password_hash_fast=True,
        ntp_server_default="",
    )
    runtime = compose.build(settings)
    initialise(runtime)
    runtime.serving = True
    ca = TestCa()
    issued = ca.issue([HOST, SITE])
    chain = tmp_path / "server.pem"
    chain.write_bytes(issued.certificate_pem() + issued.key_pem())
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(chain)
    listeners = UvicornListeners(server_tls)
    listeners.attach(create_app(runtime))
    port = free_port(HOST)
    await listeners.open(ListenAddress(HOST, port))
    with runtime.uow() as uow:
        hasher = runtime.part(AccountsSetup).hasher
        made = api_clients.create_client(uow, hasher, Actor(None, "test"), "büro reader")
        uow.commit()
    tls = ssl.create_default_context(cadata=ca.pem().decode())
    async with httpx.AsyncClient(base_url=f"https://{HOST}:{port}", verify=tls) as client:
        token = await client.post(
            "/api/v1/oauth/token",
            data={"client_id": made.client.client_id, "client_secret": made.client_secret},
        )
    pool = runtime.engine.pool
    connections = int(pool.size() + pool._max_overflow)  # type: ignore[attr-defined]
    try:
        yield Site(port, tls, f"Bearer {token.json()['access_token']}", connections)
    finally:
        await listeners.close_all(at_once=True)
        runtime.engine.dispose()


async def test_more_requests_than_threads_and_connections_are_all_answered(
    site: Site,
) -> None:
    """Every connection is open before any request is sent, and the requests are sent
    all at once: the site has them all in hand together, as when a burst of clients
    comes in while others are still being answered."""
    threads = anyio.to_thread.current_default_thread_limiter().total_tokens
    many = int(threads) + site.connections + 20
    opened = await asyncio.gather(
        *(asyncio.open_connection(HOST, site.port, ssl=site.tls) for _ in range(many))
    )
    request = (
        f"GET /api/v1/accounts HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
        f"Authorization: {site.authorization}\r\n\r\n"
    ).encode()
    for _reader, writer in opened:
        writer.write(request)
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(reader.read() for reader, _writer in opened)), WITHIN
        )
    finally:
        for _reader, writer in opened:
            writer.transport.abort()

    statuses = [answer.split(b"\r\n", 1)[0] for answer in answers]
    assert statuses == [b"HTTP/1.1 200 OK"] * many
    assert all(b'"username":"admin"' in answer for answer in answers)
