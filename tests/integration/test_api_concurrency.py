"""More authenticated API requests at once than the worker has threads and database
connections together, over the appliance's own listeners (uvicorn, real TLS).

A request that held its database connection while it waited for a worker thread could
leave every thread waiting for a connection and every connection waiting for a thread:
the site stopped answering until the pool's checkout timeout (30 s) failed them all.
The site now admits as many requests with a unit of work as the pool can serve; the
others wait their turn on the event loop. On the embedded SQLite and on PostgreSQL (a
smaller pool: 30 connections against SQLite's 60)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from tests.support.postgres import available_server
from tests.support.served_app import HOST, ServedApp, served_app

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
SITE = "concurrency.example.test"
WITHIN = 20.0
"""Seconds all the requests have; well under the pool's 30 s checkout timeout."""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The appliance's database settings: the embedded SQLite, or a PostgreSQL server."""
    with ExitStack() as stack:
        if request.param == "postgresql":
            server = stack.enter_context(available_server())
            yield {"database_url": server.create_database("burst")}
        else:
            yield {}


@pytest.fixture
async def site(tmp_path: Path, database: dict[str, Any]) -> AsyncIterator[ServedApp]:
    async with served_app(tmp_path, SITE, "büro reader", **database) as app:
        yield app


async def test_more_requests_than_threads_and_connections_are_all_answered(
    site: ServedApp,
) -> None:
    """Every connection is open before any request is sent, and the requests are sent
    all at once: the site has them all in hand together, as when a burst of clients
    comes in while others are still being answered."""
    threads = anyio.to_thread.current_default_thread_limiter().total_tokens
    pool = site.runtime.engine.pool
    connections = int(pool.size() + pool._max_overflow)  # type: ignore[attr-defined]
    many = int(threads) + connections + 20
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
