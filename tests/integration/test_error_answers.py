"""The platform's one error shape, on the platform's own app with routes that fail for
real: a crash answers 500 in the API's error body (or the error page) with the security
headers and no-store; a page refused by validation gets the error page, not JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Query
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from bastion.entrypoints import compose
from bastion.platform.settings import ApplianceSettings
from bastion.platform.web.answers import SECURITY_HEADERS
from bastion.platform.web.app import create_app

pytestmark = pytest.mark.anyio

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
