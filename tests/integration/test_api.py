"""The JSON API against a real appliance process over real TLS."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.appliance import RunningAppliance, free_port, start_appliance

HOST = "127.0.0.41"


def create_client(appliance: RunningAppliance, name: str, *extra: str) -> dict[str, str]:
    """Credentials of a new API client, made on the appliance's console."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bastion",
            "appliance",
            "api-client",
            "create",
            name,
            "--data",
            str(appliance.data_dir),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout))


def get_token(appliance: RunningAppliance, creds: dict[str, str]) -> httpx.Response:
    with appliance.client() as client:
        return client.post(
            "/api/v1/oauth/token", data={"grant_type": "client_credentials", **creds}
        )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    with start_appliance(tmp_path_factory.mktemp("api"), host=HOST) as running:
        yield running


@pytest.fixture(scope="module")
def api(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    creds = create_client(appliance, "automation")
    token = get_token(appliance, creds).json()["access_token"]
    with appliance.client(headers=bearer(token)) as client:
        yield client


def test_health_answers_without_authentication(appliance: RunningAppliance) -> None:
    with appliance.client() as client:
        response = client.get("/check_health")
    assert response.status_code == 200
    assert response.json() == {
        "version": "1.0.0",
        "failover_role": "none",
        "enabled_shared_ips": [],
        "last_data_sync_time": None,
        "last_data_sync_status": None,
        "status": "ok",
    }


def test_a_token_lasts_one_hour_and_reads_the_api(appliance: RunningAppliance) -> None:
    response = get_token(appliance, create_client(appliance, "reader"))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    with appliance.client(headers=bearer(body["access_token"])) as client:
        status = client.get("/api/v1/status").json()
    assert status["product_version"] == "1.0.0"
    assert status["clock"]["message"] == "No NTP server is configured."


def test_requests_without_or_with_a_bad_token_are_refused(appliance: RunningAppliance) -> None:
    with appliance.client() as client:
        missing = client.get("/api/v1/accounts")
        forged = client.get("/api/v1/accounts", headers=bearer("forged"))
    assert missing.status_code == 401 and "Authorization: Bearer" in missing.text
    assert forged.status_code == 401 and "not valid" in forged.text


def test_a_wrong_secret_gets_no_token(appliance: RunningAppliance) -> None:
    creds = create_client(appliance, "wrong-secret")
    response = get_token(appliance, {**creds, "client_secret": "nope"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Unknown API client or wrong secret."


def test_revoking_a_client_ends_its_tokens_at_once(
    appliance: RunningAppliance, api: httpx.Client
) -> None:
    creds = create_client(appliance, "to-revoke")
    token = get_token(appliance, creds).json()["access_token"]
    client_id = next(
        c["id"] for c in api.get("/api/v1/api-clients").json() if c["name"] == "to-revoke"
    )
    assert api.delete(f"/api/v1/api-clients/{client_id}").status_code == 200
    with appliance.client(headers=bearer(token)) as client:
        refused = client.get("/api/v1/status")
    assert refused.status_code == 401 and "revoked" in refused.text
    assert get_token(appliance, creds).status_code == 401


def test_accounts_are_created_and_edited_with_an_audit_trail(api: httpx.Client) -> None:
    created = api.post(
        "/api/v1/accounts",
        json={"username": "Rep.One", "password": "a long pass phrase", "role": "representative"},
    )
    assert created.status_code == 201, created.text
    account = created.json()
    assert account["username"] == "rep.one" and account["must_change_password"]
    edited = api.patch(f"/api/v1/accounts/{account['id']}", json={"disabled": True})
    assert edited.json()["disabled"] is True
    entries = api.get("/api/v1/audit", params={"limit": 10}).json()["entries"]
    actions = [(e["action"], e["target"], e["actor"]) for e in entries]
    assert ("account.update", "rep.one", "api:automation") in actions
    assert ("account.create", "rep.one", "api:automation") in actions
    assert all(e["source"].startswith("127.") for e in entries if e["actor"].startswith("api:"))


def test_bad_input_is_explained_and_changes_nothing(api: httpx.Client) -> None:
    before = api.get("/api/v1/audit").json()["total"]
    malformed = api.post(
        "/api/v1/accounts", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400 and "not valid JSON" in malformed.text
    weak = api.post(
        "/api/v1/accounts", json={"username": "x1", "password": "short", "role": "representative"}
    )
    assert weak.status_code == 422 and "password" in weak.text and "at least 12" in weak.text
    common = api.post(
        "/api/v1/accounts",
        json={"username": "x1", "password": "changeme1234", "role": "representative"},
    )
    assert common.status_code == 400 and "too common" in common.text
    unknown_role = api.post(
        "/api/v1/accounts", json={"username": "x2", "password": "a long pass phrase", "role": "god"}
    )
    assert unknown_role.status_code == 422 and "role" in unknown_role.text
    extra = api.patch("/api/v1/accounts/1", json={"is_admin": True})
    assert extra.status_code == 422 and "is_admin" in extra.text
    assert api.get("/api/v1/audit").json()["total"] == before


def test_the_last_administrator_cannot_be_disabled(api: httpx.Client) -> None:
    admin = next(a for a in api.get("/api/v1/accounts").json() if a["username"] == "admin")
    refused = api.patch(f"/api/v1/accounts/{admin['id']}", json={"disabled": True})
    assert refused.status_code == 409 and "last active administrator" in refused.text


def test_a_listen_address_added_at_run_time_serves_at_once(
    appliance: RunningAppliance, api: httpx.Client
) -> None:
    port = free_port("127.0.0.42")
    added = api.post("/api/v1/network/listen-addresses", json={"address": f"127.0.0.42:{port}"})
    assert added.status_code == 201, added.text
    tls = appliance.tls()
    tls.check_hostname = False  # the certificate names the site, not every address it serves on
    with httpx.Client(verify=tls) as other:
        assert other.get(f"https://127.0.0.42:{port}/check_health").status_code == 200
    row = added.json()
    disabled = api.patch(f"/api/v1/network/listen-addresses/{row['id']}", json={"enabled": False})
    assert disabled.json() == {**row, "enabled": False, "serving": False}
    with httpx.Client(verify=tls) as other, pytest.raises(httpx.ConnectError):
        other.get(f"https://127.0.0.42:{port}/check_health")
    actions = [e["action"] for e in api.get("/api/v1/audit").json()["entries"]]
    assert "network.listen_address.add" in actions and "network.listen_address.disable" in actions


def test_an_address_this_machine_does_not_have_is_refused(api: httpx.Client) -> None:
    before = api.get("/api/v1/network/listen-addresses").json()
    refused = api.post("/api/v1/network/listen-addresses", json={"address": "203.0.113.7:8443"})
    assert refused.status_code == 400
    assert "has no network address 203.0.113.7" in refused.text
    garbage = api.post("/api/v1/network/listen-addresses", json={"address": "localhost"})
    assert garbage.status_code == 400 and "ADDR:PORT" in garbage.text
    missing = api.patch("/api/v1/network/listen-addresses/999", json={"enabled": True})
    assert missing.status_code == 404
    assert api.get("/api/v1/network/listen-addresses").json() == before


def test_the_only_enabled_address_cannot_be_disabled(api: httpx.Client) -> None:
    rows = [r for r in api.get("/api/v1/network/listen-addresses").json() if r["enabled"]]
    assert len(rows) == 1
    refused = api.patch(
        f"/api/v1/network/listen-addresses/{rows[0]['id']}", json={"enabled": False}
    )
    assert refused.status_code == 409 and "only enabled address" in refused.text


def test_metrics_need_a_token_and_count_requests(
    appliance: RunningAppliance, api: httpx.Client
) -> None:
    with appliance.client() as client:
        assert client.get("/metrics").status_code == 401
    text = api.get("/metrics").text
    assert 'bastion_http_requests_total{method="GET",route="/check_health",status="200"}' in text
    assert "bastion_database_size_bytes" in text and "bastion_signed_in_users" in text
    # The scrape itself holds a turn at the database while it is answered.
    assert "bastion_database_requests_running 1.0" in text
    assert "bastion_database_requests_waiting 0.0" in text
    assert "bastion_database_requests_outlasted_total" in text


def test_the_openapi_schema_lists_the_operations(appliance: RunningAppliance) -> None:
    with appliance.client() as client:
        schema = client.get("/api/v1/openapi.json").json()
    assert {"/api/v1/accounts", "/api/v1/oauth/token", "/api/v1/network/listen-addresses"} <= set(
        schema["paths"]
    )


def test_an_expired_token_is_refused(tmp_path: Path) -> None:
    env = {"BASTION_API_TOKEN_TTL_SECONDS": "1"}
    with start_appliance(tmp_path, host="127.0.0.43", env=env) as appliance:
        token = get_token(appliance, create_client(appliance, "short-lived")).json()["access_token"]
        time.sleep(1.2)
        with appliance.client(headers=bearer(token)) as client:
            response = client.get("/api/v1/status")
    assert response.status_code == 401 and "expired" in response.text
