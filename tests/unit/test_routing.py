"""The site's routes: a plain `def` endpoint runs on a worker thread, its answer is
checked on the event loop (one trip to a thread, not two), and the endpoint's
signature, dependencies and response model still shape the route."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, field_validator
from starlette.routing import BaseRoute, Match, WebSocketRoute
from starlette.types import Scope

from bastion.entrypoints.web import ROUTERS
from bastion.platform.web import docs
from bastion.platform.web.app import create_app
from bastion.platform.web.routing import OneTripRoute, Router

ON_THE_LOOP: dict[str, bool] = {}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _on_the_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Thing(BaseModel):
    id: int
    name: str

    @field_validator("name")
    @classmethod
    def _where(cls, name: str) -> str:
        ON_THE_LOOP["checked"] = _on_the_loop()
        return name


async def prefix() -> str:
    return "thing-"


def _app(router: APIRouter) -> httpx.AsyncClient:
    @router.get("/things/{thing_id:int}", response_model=Thing)
    def get_thing(thing_id: int, name: Annotated[str, Depends(prefix)]) -> dict[str, object]:
        ON_THE_LOOP["endpoint"] = _on_the_loop()
        return {"id": thing_id, "name": f"{name}{thing_id}"}

    @router.get("/first-thing")
    def first_thing() -> Thing:
        return Thing(id=1, name="first")

    app = FastAPI()
    app.include_router(router)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://site")


@pytest.mark.anyio
async def test_a_plain_endpoint_runs_on_a_thread_and_its_answer_is_checked_on_the_loop() -> None:
    ON_THE_LOOP.clear()
    async with _app(Router()) as client:
        answer = await client.get("/things/9223372036854775807")
    assert answer.status_code == 200
    assert answer.json() == {"id": 2**63 - 1, "name": f"thing-{2**63 - 1}"}
    assert ON_THE_LOOP == {"endpoint": False, "checked": True}


@pytest.mark.anyio
async def test_a_plain_router_would_check_the_answer_on_a_second_trip() -> None:
    """What the route class changes: FastAPI's own route checks a plain endpoint's
    answer on a worker thread too."""
    ON_THE_LOOP.clear()
    async with _app(APIRouter()) as client:
        assert (await client.get("/things/1")).status_code == 200
    assert ON_THE_LOOP == {"endpoint": False, "checked": False}


@pytest.mark.anyio
async def test_the_route_keeps_the_endpoints_parameters_and_response_model() -> None:
    async with _app(Router()) as client:
        assert (await client.get("/things/x")).status_code == 404  # the path's `:int`
        schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/things/{thing_id}"]["get"]
    assert [p["name"] for p in operation["parameters"]] == ["thing_id"]
    for path in ("/things/{thing_id}", "/first-thing"):  # declared, and from `-> Thing`
        answer = schema["paths"][path]["get"]["responses"]["200"]["content"]
        assert answer["application/json"]["schema"] == {"$ref": "#/components/schemas/Thing"}


@pytest.mark.parametrize("router", [*ROUTERS, docs.router], ids=lambda r: r.prefix or "/")
def test_every_route_of_the_site_takes_one_trip(router: APIRouter) -> None:
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    assert all(isinstance(route, OneTripRoute) for route in routes), [
        route.path for route in routes if not isinstance(route, OneTripRoute)
    ]


@pytest.mark.anyio
async def test_a_router_is_skipped_for_paths_none_of_its_routes_begins_with() -> None:
    router = Router()
    tried: list[str] = []
    async with _app(router) as client:
        for route in router.routes:  # record every route FastAPI tries the request on
            original = route.matches

            def matches(scope: Scope, original: Any = original, path: str = route.path) -> Any:
                tried.append(path)
                return original(scope)

            route.matches = matches  # type: ignore[method-assign]
        assert (await client.get("/other-things/7")).status_code == 404
        assert tried == []  # no route of the router was tried
        assert (await client.get("/things/7")).status_code == 200
        assert "/things/{thing_id:int}" in tried
        assert (await client.post("/things/7")).status_code == 405  # found, not that method
        assert (await client.get("/first-thing")).status_code == 200


SAMPLES = {
    "int": "7",
    "float": "1.5",
    "path": "a/b",
    "uuid": "0b8e4b8e-7a3c-4e8e-9a51-3f0f6d2a1c11",
}


def _sample(path: str) -> str:
    """A path the route matches: each parameter given a value of its kind."""
    return re.sub(r"{[^}:]+(?::([^}]+))?}", lambda m: SAMPLES.get(m.group(1) or "", "x"), path)


def _scope(route: BaseRoute) -> dict[str, object]:
    kind = "websocket" if isinstance(route, WebSocketRoute) else "http"
    methods = sorted(getattr(route, "methods", None) or {"GET"})
    path = _sample(str(getattr(route, "path", "")))
    return {"type": kind, "path": path, "root_path": "", "method": methods[0], "headers": []}


@pytest.fixture(scope="module")
def site() -> FastAPI:
    """The site's app as the platform includes its routers (no database needed to route)."""
    return create_app(None, ROUTERS)  # type: ignore[arg-type]


@pytest.mark.parametrize("router", [*ROUTERS, docs.router], ids=lambda r: r.prefix or "/")
def test_every_route_of_the_site_is_still_found(router: APIRouter, site: FastAPI) -> None:
    assert router.routes
    for route in router.routes:
        scope = _scope(route)
        assert route.matches(scope)[0] is Match.FULL, scope  # the sample is the route's
        found = max((r.matches(scope)[0] for r in site.router.routes), key=lambda m: m.value)
        assert found is Match.FULL, f"{scope['method']} {scope['path']} is not found"
