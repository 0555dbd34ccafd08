"""Every route of a real appliance, walked over TLS anonymously and signed in, for success
and error answers: each carries the security headers, and each but a static file says
`Cache-Control: no-store` (tokens, client secrets, private keys and backups among them)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from bastion.entrypoints import compose
from bastion.entrypoints.web import create_app
from bastion.network.listeners import UvicornListeners
from bastion.platform.settings import ApplianceSettings
from bastion.platform.web.answers import SECURITY_HEADERS
from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.web import change_password, csrf_of, sign_in

PASSWORD = "a much better secret"
PASSPHRASE = "a backup pass phrase"
NOT_WALKED_SIGNED_IN = {
    ("POST", "/appliance/status/basics/shut-down"),  # would stop the appliance under test
    ("POST", "/login/logout"),  # would end the walk's session
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str

    def url(self, found: bool) -> str:
        """The path with its ids: one that exists, or one that does not (API clients are
        never one that exists: the walk's own client would be revoked)."""
        ids = {"account_id": "1", "certificate_id": "1", "row_id": "1"}
        return re.sub(
            r"\{(\w+)(:\w+)?\}",
            lambda m: ids.get(m[1], "999999") if found else "999999",
            self.path,
        )


def every_route() -> list[Route]:
    """The routes of the appliance's web app, as built for serving."""
    with tempfile.TemporaryDirectory() as folder:
        runtime = compose.build(ApplianceSettings(data_dir=Path(folder), ntp_server_default=""))
        compose.add_network(runtime, UvicornListeners(None))
        app = create_app(runtime)
        runtime.engine.dispose()
    return [
        Route(method, route.path)
        for route in iter_route_contexts(app.routes)
        for method in sorted(route.methods or ())
        if route.path
    ]


ROUTES = every_route()


def check(answer: httpx.Response) -> None:
    where = f"{answer.request.method} {answer.request.url.path} -> {answer.status_code}"
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get(name) == value, f"{where}: {name} is {answer.headers.get(name)}"
    if not answer.request.url.path.startswith("/static/"):
        assert answer.headers.get("cache-control") == "no-store", where


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    with start_appliance(tmp_path_factory.mktemp("headers"), host="127.0.0.65") as running:
        yield running


@pytest.fixture(scope="module")
def browser(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    with appliance.client() as client:
        sign_in(client, "admin", "password")
        assert change_password(client, "password", PASSWORD).status_code == 303
        yield client


@pytest.fixture(scope="module")
def api(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    token = get_token(appliance, create_client(appliance, "walker")).json()["access_token"]
    with appliance.client(headers=bearer(token)) as client:
        yield client


def test_the_walk_covers_pages_api_docs_and_static_files() -> None:
    paths = {route.path for route in ROUTES}
    assert {"/login", "/api/v1/accounts", "/api/v1/docs", "/check_health"} <= paths
    assert len(ROUTES) > 80


def test_every_route_answers_an_anonymous_caller_with_the_headers(
    appliance: RunningAppliance,
) -> None:
    with appliance.client() as anonymous:
        for route in ROUTES:
            for found in (True, False):
                check(anonymous.request(route.method, route.url(found)))
        check(anonymous.get("/static/bastion.css"))
        check(anonymous.get("/static/swagger-ui/swagger-ui-bundle.js"))
        check(anonymous.get("/no/such/page"))
        check(anonymous.request("TRACE", "/api/v1/accounts"))


def test_every_route_answers_a_signed_in_administrator_with_the_headers(
    browser: httpx.Client, api: httpx.Client
) -> None:
    token = csrf_of(browser.get("/login/home"))
    for route in ROUTES:
        if (route.method, route.path) in NOT_WALKED_SIGNED_IN:
            continue
        client = api if route.path.startswith("/api/") else browser
        for found in (True, False):
            data = {"csrf_token": token} if route.method == "POST" else None
            if route.path.startswith("/api/"):
                answer = client.request(route.method, route.url(found), json={})
            else:
                answer = client.request(route.method, route.url(found), data=data)
            assert answer.status_code < 500, f"{route} -> {answer.status_code}: {answer.text}"
            check(answer)


def test_answers_that_carry_a_secret_are_never_stored(
    appliance: RunningAppliance, browser: httpx.Client, api: httpx.Client
) -> None:
    secrets = {
        "token": get_token(appliance, create_client(appliance, "secret-walk")),
        "client secret": api.post("/api/v1/api-clients", json={"name": "shown once"}),
        "backup": api.post("/api/v1/backups", json={"passphrase": PASSPHRASE}),
    }
    made = api.post("/api/v1/certificates/self-signed", json={"names": ["walk.example"]}).json()
    key = {"private_key": True, "passphrase": PASSPHRASE, "format": "pem"}
    secrets["private key"] = api.post(f"/api/v1/certificates/{made['id']}/export", json=key)
    pages = browser.get("/login/api-clients")
    secrets["client secret page"] = browser.post(
        "/login/api-clients", data={"csrf_token": csrf_of(pages), "name": "page client"}
    )
    software = browser.get("/login/management/software")
    secrets["backup page"] = browser.post(
        "/login/management/software/backup",
        data={
            "csrf_token": csrf_of(software),
            "passphrase": PASSPHRASE,
            "confirm_passphrase": PASSPHRASE,
        },
    )
    for name, answer in secrets.items():
        assert answer.status_code in (200, 201), f"{name}: {answer.status_code} {answer.text}"
        check(answer)
    assert b"PRIVATE KEY" in secrets["private key"].content
    assert "client_secret" in secrets["client secret"].json()


def test_a_method_a_path_does_not_take_is_405_with_allow(appliance: RunningAppliance) -> None:
    with appliance.client() as anonymous:
        api = anonymous.request("TRACE", "/api/v1/accounts")
        page = anonymous.request("TRACE", "/login")
    assert api.status_code == 405 and api.headers["allow"] == "GET, POST"
    assert api.json()["error"]["message"].endswith("it takes GET, POST.")
    assert page.status_code == 405 and page.headers["allow"] == "GET, POST"
    assert "text/html" in page.headers["content-type"]
