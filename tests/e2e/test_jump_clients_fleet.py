"""Jump Clients end to end, all real processes: an appliance (supervisor, worker, gateway
process) and three Jump Clients installed with `bastion jump-client install` from
installers made through the API, run with `bastion jump-client run`, over real TLS.

Two active clients appear online with their statistics; the passive one checks in at
start, when asked on its endpoint and when the site wakes it; a revoked client is
dropped at once and stays refused; a deleted client uninstalls itself. Revoking and
deleting are tried from the API and from the pages alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_api import bearer, create_client, get_token
from tests.support import web
from tests.support.appliance import RunningAppliance, free_port, start_appliance
from tests.support.endpoints import Client, bastion, eventually, install_and_run

SITE = "fleet.example.test"
HOST = "127.0.0.41"


@dataclass
class Site:
    appliance: RunningAppliance
    api: httpx.Client


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("fleet")
    web, gateway = free_port(HOST), free_port(HOST)
    env = {
        "BASTION_GATEWAY_LISTEN": f"{HOST}:{gateway}",
        "BASTION_GATEWAY_ADDRESS": f"{HOST}:{gateway}",
        "BASTION_PUBLIC_URL": f"https://{HOST}:{web}",
    }
    with start_appliance(tmp, host=HOST, port=web, env=env, extra_args=["--hostname", SITE]) as a:
        token = get_token(a, create_client(a, "fleet")).json()["access_token"]
        with a.client(headers=bearer(token), timeout=60) as api:
            yield Site(a, api)


def installer(site: Site, tmp: Path, **body: Any) -> Path:
    made = site.api.post("/api/v1/jump-clients/installers", json=body)
    assert made.status_code == 201, made.text
    path = tmp / f"installer-{made.json()['id']}.json"
    path.write_text(made.json()["installer"])
    return path


@pytest.fixture(scope="module")
def clients(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Client]]:
    tmp = tmp_path_factory.mktemp("endpoints")
    active = installer(site, tmp, mode="active", jump_group="Servers", tag="web")
    passive = installer(site, tmp, mode="passive", jump_group="Laptops")
    started: dict[str, Client] = {}
    try:
        endpoints = [(name, active) for name in ("one", "two", "three", "four")]
        for name, file in [*endpoints, ("passive", passive)]:
            started[name] = install_and_run(file, tmp / name, tmp / f"{name}.log")
        yield started
    finally:
        for client in started.values():
            client.stop()


def listed(site: Site, **params: str) -> list[dict[str, Any]]:
    answer = site.api.get("/api/v1/jump-clients", params=params)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["clients"])


def client_id(client: Client) -> str:
    return str(json.loads((client.state / "installation.json").read_text())["client_id"])


def record(site: Site, client: Client) -> dict[str, Any]:
    return next(c for c in listed(site) if c["client_id"] == client_id(client))


def test_active_clients_come_online_with_their_statistics(
    site: Site, clients: dict[str, Client]
) -> None:
    active = [clients["one"], clients["two"]]
    eventually(
        lambda: all(record(site, c)["status"] == "online" for c in active),
        what="both active clients online",
    )
    eventually(lambda: bool(record(site, clients["one"])["statistics"]), what="statistics")
    shown = record(site, clients["one"])
    assert shown["statistics"]["cpu"]["count"] >= 1
    assert shown["hostname"] and shown["os"]
    assert shown["mode"] == "active" and shown["jump_group"] == "Servers"
    assert [c["tag"] for c in listed(site, tag="web")] == ["web"] * 4


def test_the_passive_client_checks_in_at_start_when_asked_and_when_woken(
    site: Site, clients: dict[str, Client]
) -> None:
    passive = clients["passive"]
    eventually(lambda: record(site, passive)["last_check_in_at"] is not None, what="check-in")
    assert record(site, passive)["status"] == "offline"  # it keeps no connection
    eventually(
        lambda: (
            site.api.get(f"/api/v1/jump-clients/{record(site, passive)['id']}").json()[
                "last_seen_at"
            ]
            is not None
        ),
        what="first check-in stored",
    )
    first = record(site, passive)["last_seen_at"]
    asked = bastion("jump-client", "check-in", "--dir", str(passive.state))
    assert asked.returncode == 0 and "Checking in" in asked.stdout
    eventually(lambda: record(site, passive)["last_seen_at"] != first, what="asked check-in")
    second = record(site, passive)["last_seen_at"]
    time.sleep(1.1)  # check-ins are stored to the second
    woken = site.api.post(f"/api/v1/jump-clients/{record(site, passive)['id']}/wake")
    assert woken.status_code == 200, woken.text
    assert woken.json()["answer"] == "ok"
    eventually(lambda: record(site, passive)["last_seen_at"] != second, what="woken check-in")


def test_a_changed_connection_rate_reaches_the_running_gateway(site: Site) -> None:
    before = site.api.get("/api/v1/jump-clients/settings").json()
    changed = {**before, "connection_rate": 120, "statistics_interval_seconds": 45}
    try:
        assert site.api.put("/api/v1/jump-clients/settings", json=changed).status_code == 200
        applied = "admits 120 clients/s and asks for statistics every 45 s"
        eventually(lambda: applied in site.appliance.log(), timeout=20, what="gateway applies it")
    finally:
        site.api.put("/api/v1/jump-clients/settings", json=before)


@pytest.fixture(scope="module")
def pages(site: Site) -> Iterator[httpx.Client]:
    """An administrator signed in to the pages (the first time: choosing a password)."""
    with site.appliance.client(timeout=60) as browser:
        web.sign_in(browser, "admin", "password")
        changed = web.change_password(browser, "password", "a long fleet pass phrase")
        assert changed.status_code == 303, changed.text
        yield browser


def revoke(site: Site, pages: httpx.Client, how: str, row_id: int) -> None:
    if how == "api":
        answer = site.api.post(f"/api/v1/jump-clients/{row_id}/revoke")
        assert answer.json()["status"] == "revoked", answer.text
    else:
        page = f"/login/jump/jump-clients/{row_id}"
        answer = web.submit(pages, page, f"{page}/revoke")
        assert answer.status_code == 303, answer.text


def delete(site: Site, pages: httpx.Client, how: str, row_id: int) -> None:
    if how == "api":
        assert site.api.delete(f"/api/v1/jump-clients/{row_id}").status_code == 200
    else:
        page = f"/login/jump/jump-clients/{row_id}"
        answer = web.submit(pages, page, f"{page}/delete")
        assert answer.status_code == 303, answer.text


@pytest.mark.parametrize(("how", "name"), [("api", "two"), ("page", "three")])
def test_a_revoked_client_is_dropped_at_once_and_stays_refused(
    site: Site, clients: dict[str, Client], pages: httpx.Client, how: str, name: str
) -> None:
    revoked = clients[name]
    eventually(lambda: record(site, revoked)["status"] == "online", what="online first")
    revoke(site, pages, how, record(site, revoked)["id"])
    assert record(site, revoked)["status"] == "revoked"
    eventually(lambda: not record(site, revoked)["online"], timeout=20, what="dropped")
    eventually(lambda: "revoked" in revoked.output(), timeout=20, what="the client was told why")
    time.sleep(3)
    assert not record(site, revoked)["online"]


@pytest.mark.parametrize(("how", "name"), [("api", "one"), ("page", "four")])
def test_a_deleted_client_uninstalls_itself(
    site: Site, clients: dict[str, Client], pages: httpx.Client, how: str, name: str
) -> None:
    deleted = clients[name]
    eventually(lambda: record(site, deleted)["status"] == "online", what="online first")
    gone = client_id(deleted)
    delete(site, pages, how, record(site, deleted)["id"])
    eventually(lambda: deleted.process.poll() is not None, timeout=30, what="the client exits")
    assert not deleted.state.exists()
    eventually(
        lambda: all(c["client_id"] != gone for c in listed(site)), timeout=30, what="record gone"
    )
