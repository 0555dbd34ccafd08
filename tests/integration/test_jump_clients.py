"""Jump Client installers, registration and the site's list, through the API in process,
against a real SQLite database: every refusal of an installer has its own message and
registers nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from bastion.accounts import api_clients
from bastion.accounts.service import AccountsSetup
from bastion.agents.identity import registration_payload
from bastion.entrypoints import compose
from bastion.entrypoints.serving import initialise
from bastion.entrypoints.web import create_app
from bastion.jump_clients.models import InstallerRow
from bastion.platform.principals import Actor
from bastion.platform.settings import ApplianceSettings

pytestmark = pytest.mark.anyio
SITE = "jump.example.test"
ACTOR = Actor(None, "test")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    settings = ApplianceSettings(
        data_dir=tmp_path / "appliance",
        hostname=SITE,
        listen=["127.0.0.1:8443"],
        gateway_listen="127.0.0.1:8444",
        password_hash_fast=True,
        ntp_server_default="",
    )
    runtime = compose.build(settings)
    initialise(runtime)
    runtime.serving = True
    yield create_app(runtime)
    runtime.engine.dispose()


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    runtime = app.state.runtime
    with runtime.uow() as uow:
        made = api_clients.create_client(uow, runtime.part(AccountsSetup).hasher, ACTOR, "t")
        uow.commit()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://appliance") as client:
        token = await client.post(
            "/api/v1/oauth/token",
            data={"client_id": made.client.client_id, "client_secret": made.client_secret},
        )
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield client


async def new_installer(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    made = await api.post("/api/v1/jump-clients/installers", json=body)
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    return dict(json.loads(made.json()["installer"]))


def registration(
    installer: dict[str, Any], hostname: str = "web-01", **changed: Any
) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    body = {
        "token": installer["token"],
        "site": installer["site"],
        "site_version": installer["site_version"],
        "mode": installer["mode"],
        "jump_group": installer["jump_group"],
        "tag": installer["tag"],
        "public_key": base64.b64encode(raw).decode(),
        "endpoint": {"machine": "m" * 32, "hostname": hostname, "os": "Linux"},
        "agent_version": installer["site_version"],
    }
    return {**body, **changed}


async def count(api: httpx.AsyncClient) -> int:
    return int((await api.get("/api/v1/jump-clients")).json()["total"])


async def test_an_installer_carries_the_site_and_its_anchors(api: httpx.AsyncClient) -> None:
    installer = await new_installer(api, mode="passive", jump_group="Servers", tag="db")
    assert installer["site"] == SITE
    assert installer["gateway"] == f"{SITE}:8444"
    assert installer["anchors"].startswith("-----BEGIN CERTIFICATE-----")
    assert (installer["mode"], installer["jump_group"], installer["tag"]) == (
        "passive",
        "Servers",
        "db",
    )
    listed = (await api.get("/api/v1/jump-clients/installers")).json()
    assert listed[0]["usable"] is True and "token" not in json.dumps(listed)


async def test_a_client_registers_and_is_listed_edited_revoked_and_deleted(
    api: httpx.AsyncClient,
) -> None:
    installer = await new_installer(api, jump_group="Servers", tag="web")
    registered = await api.post("/api/v1/jump-clients/register", json=registration(installer))
    assert registered.status_code == 201, registered.text
    client = registered.json()
    assert client["client_id"].startswith("jc_") and client["status"] == "offline"
    found = await api.get("/api/v1/jump-clients", params={"group": "serv", "mode": "active"})
    assert [c["name"] for c in found.json()["clients"]] == ["web-01"]
    assert (await api.get("/api/v1/jump-clients", params={"tag": "nothing"})).json()["total"] == 0
    edited = await api.patch(f"/api/v1/jump-clients/{client['id']}", json={"name": "Web one"})
    assert edited.json()["name"] == "Web one"
    revoked = await api.post(f"/api/v1/jump-clients/{client['id']}/revoke")
    assert revoked.json()["status"] == "revoked"
    deleted = await api.delete(f"/api/v1/jump-clients/{client['id']}")
    assert deleted.status_code == 200


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"site": "other.example.test"}, "made for the site 'other.example.test'"),
        ({"token": "x" * 43}, "never made this installer"),
        ({"tag": "altered"}, "altered after the site made it"),
        ({"mode": "passive"}, "altered after the site made it"),
        ({"site_version": "0.9.0"}, "altered after the site made it"),
    ],
)
async def test_a_foreign_unknown_or_altered_installer_registers_nothing(
    api: httpx.AsyncClient, change: dict[str, str], expected: str
) -> None:
    installer = await new_installer(api)
    refused = await api.post(
        "/api/v1/jump-clients/register", json=registration(installer, **change)
    )
    assert refused.status_code == 401
    assert expected in refused.json()["error"]["message"]
    assert await count(api) == 0


async def test_a_revoked_expired_or_outdated_installer_registers_nothing(
    app: FastAPI, api: httpx.AsyncClient
) -> None:
    revoked = await new_installer(api)
    listed = (await api.get("/api/v1/jump-clients/installers")).json()
    await api.delete(f"/api/v1/jump-clients/installers/{listed[0]['id']}")
    answer = await api.post("/api/v1/jump-clients/register", json=registration(revoked))
    assert "revoked" in answer.json()["error"]["message"]
    expired, outdated = await new_installer(api), await new_installer(api)
    with app.state.runtime.uow() as uow:
        rows = uow.session.query(InstallerRow).order_by(InstallerRow.id).all()
        rows[1].expires_at = rows[1].created_at
        rows[2].site_version = outdated["site_version"] = "0.9.0"
        uow.commit()
    answer = await api.post("/api/v1/jump-clients/register", json=registration(expired))
    assert "expired" in answer.json()["error"]["message"]
    answer = await api.post("/api/v1/jump-clients/register", json=registration(outdated))
    assert "made for site version 0.9.0" in answer.json()["error"]["message"]
    assert "Make a new installer" in answer.json()["error"]["message"]
    assert await count(api) == 0
    audit = await api.get("/api/v1/audit", params={"action": "jump_clients.register.refused"})
    assert audit.json()["total"] == 3


async def test_one_identity_registers_once_and_one_machine_twice_is_shown(
    api: httpx.AsyncClient,
) -> None:
    installer = await new_installer(api)
    first = registration(installer)
    assert (await api.post("/api/v1/jump-clients/register", json=first)).status_code == 201
    again = await api.post("/api/v1/jump-clients/register", json=first)
    assert again.status_code == 409
    second = registration(installer)
    assert (await api.post("/api/v1/jump-clients/register", json=second)).status_code == 201
    groups = (await api.get("/api/v1/jump-clients/duplicates")).json()
    assert len(groups) == 1 and len(groups[0]) == 2


async def test_bad_input_is_refused_with_what_to_fix(api: httpx.AsyncClient) -> None:
    for body in (
        {"valid_minutes": 9},
        {"valid_minutes": 525_601},
        {"mode": "sometimes"},
        {"tag": "t" * 101},
        {"valid_minutes": 2**63},
    ):
        refused = await api.post("/api/v1/jump-clients/installers", json=body)
        assert refused.status_code in (400, 422), (body, refused.text)
    assert (await api.get("/api/v1/jump-clients/9223372036854775808")).status_code in (404, 422)
    assert (await api.get("/api/v1/jump-clients/12345")).status_code == 404
    installer = await new_installer(api)
    short_key = registration(installer, public_key=base64.b64encode(b"x" * 31).decode() + "==")
    refused = await api.post("/api/v1/jump-clients/register", json=short_key)
    assert refused.status_code in (400, 422)
    assert await count(api) == 0


async def test_settings_are_kept_within_their_limits(api: httpx.AsyncClient) -> None:
    current = (await api.get("/api/v1/jump-clients/settings")).json()
    assert current["connection_rate"] == 50 and current["max_concurrent_upgrades"] == 20
    changed = {**current, "max_concurrent_upgrades": 1}
    assert (await api.put("/api/v1/jump-clients/settings", json=changed)).status_code == 200
    assert (await api.get("/api/v1/jump-clients/settings")).json()["max_concurrent_upgrades"] == 1
    too_many = {**current, "max_concurrent_upgrades": 501}
    assert (await api.put("/api/v1/jump-clients/settings", json=too_many)).status_code == 422
    too_fast = {**current, "connection_rate": 301}
    assert (await api.put("/api/v1/jump-clients/settings", json=too_fast)).status_code == 422


def signed_registration(
    installer: dict[str, Any], key: Ed25519PrivateKey, signer: Ed25519PrivateKey | None = None
) -> dict[str, Any]:
    """A registration with the endpoint key's proof (made by `signer` when forged)."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    signature = (signer or key).sign(registration_payload(installer["site"], installer["token"]))
    return registration(
        installer,
        public_key=base64.b64encode(raw).decode(),
        proof=base64.b64encode(signature).decode(),
    )


async def test_an_installer_run_over_an_installation_replaces_it_in_place(
    api: httpx.AsyncClient,
) -> None:
    key = Ed25519PrivateKey.generate()
    first = await new_installer(api, jump_group="Old", tag="before")
    registered = await api.post("/api/v1/jump-clients/register", json=registration(first))
    placed = await api.post("/api/v1/jump-clients/register", json=signed_registration(first, key))
    assert placed.status_code == 201 and registered.status_code == 201
    renamed = await api.patch(f"/api/v1/jump-clients/{placed.json()['id']}", json={"name": "db"})
    assert renamed.status_code == 200

    second = await new_installer(api, mode="passive", jump_group="New", tag="after")
    forged = await api.post(
        "/api/v1/jump-clients/register",
        json=signed_registration(second, key, signer=Ed25519PrivateKey.generate()),
    )
    assert forged.status_code == 409
    assert "did not prove it holds the key" in forged.json()["error"]["message"]
    unproven = {**signed_registration(second, key), "proof": ""}
    assert (await api.post("/api/v1/jump-clients/register", json=unproven)).status_code == 409

    replaced = await api.post(
        "/api/v1/jump-clients/register", json=signed_registration(second, key)
    )
    assert replaced.status_code == 201, replaced.text
    shown = replaced.json()
    assert shown["id"] == placed.json()["id"] and shown["client_id"] == placed.json()["client_id"]
    assert (shown["name"], shown["mode"], shown["jump_group"], shown["tag"]) == (
        "db",
        "passive",
        "New",
        "after",
    )
    assert await count(api) == 2
    audit = await api.get("/api/v1/audit", params={"action": "jump_clients.register"})
    assert [e["details"].get("replaced") for e in audit.json()["entries"]].count(True) == 1

    revoked = await api.post(f"/api/v1/jump-clients/{shown['id']}/revoke")
    assert revoked.status_code == 200
    third = await new_installer(api)
    again = await api.post("/api/v1/jump-clients/register", json=signed_registration(third, key))
    assert again.status_code == 409
    assert "was revoked by an administrator" in again.json()["error"]["message"]


async def test_an_installer_for_a_later_site_version_waits_and_registers_nothing(
    app: FastAPI, api: httpx.AsyncClient
) -> None:
    refused = await api.post("/api/v1/jump-clients/installers", json={"site_version": "9.9.9"})
    assert refused.status_code == 409
    message = refused.json()["error"]["message"]
    assert "holds no release of that version" in message and "Updates page" in message
    later = await new_installer(api)
    with app.state.runtime.uow() as uow:
        uow.session.query(InstallerRow).one().site_version = later["site_version"] = "99.0.0"
        uow.commit()
    listed = (await api.get("/api/v1/jump-clients/installers")).json()
    assert (listed[0]["usable"], listed[0]["waiting"]) == (False, True)
    waits = await api.post("/api/v1/jump-clients/register", json=registration(later))
    assert waits.status_code == 409
    assert waits.json()["error"]["type"] == "SiteNotYetUpgradedError"
    assert "registers once the site runs 99.0.0" in waits.json()["error"]["message"]
    assert await count(api) == 0
    audit = await api.get("/api/v1/audit", params={"action": "jump_clients.register.refused"})
    assert audit.json()["total"] == 0
    missing = await api.get("/api/v1/jump-clients/installers/builds/99.0.0")
    assert missing.status_code == 404
    assert "holds no site release '99.0.0'" in missing.json()["error"]["message"]
