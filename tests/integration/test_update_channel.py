"""The update channel as appliance settings: the update service URL, its CA and the trusted
root, through the API and the console, against a real update service over HTTPS.

The appliance starts with none of them in its environment (only the site name, which
comes with the site build): what it says, what it refuses, and that the CA set is what its
TLS trusts. The page is driven in Chromium in `tests/e2e/test_updates_browser.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from _update_env import UpdateService, Vendor, service
from typer.testing import CliRunner

from bastion.entrypoints.cli import app as bastion_command
from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.pki import TestCa

SERVICE_HOST, HOST = "127.0.0.101", "127.0.0.102"
S = "support.acme.example"
SETTINGS = "/api/v1/updates/settings"


@dataclass
class World:
    vendor: Vendor
    service: UpdateService
    appliance: RunningAppliance
    api: httpx.Client

    @property
    def root(self) -> str:
        return self.vendor.trusted_root().decode()

    def put(self, **body: Any) -> httpx.Response:
        return self.api.put(SETTINGS, json=body)

    def settings(self) -> dict[str, Any]:
        answer = self.api.get(SETTINGS)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def console(self, *args: str) -> Any:
        command = ["appliance", "updates", "settings", "--data", str(self.appliance.data_dir)]
        return CliRunner().invoke(bastion_command, [*command, *args], env=self.appliance.env)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("update-channel")
    vendor = Vendor.for_site(root / "vendor", S)
    vendor.release("base", "1.1")
    vendor.admin("open-wave", "base:1.1", "--wave", "1")
    with (
        service(vendor, SERVICE_HOST) as running,
        start_appliance(root, host=HOST, env={"BASTION_UPDATE_SITE": S}) as appliance,
    ):
        token = get_token(appliance, create_client(appliance, "channel")).json()["access_token"]
        with appliance.client(headers=bearer(token), timeout=60) as api:
            yield World(vendor, running, appliance, api)


def error_of(answer: httpx.Response, status: int) -> dict[str, str]:
    assert answer.status_code == status, answer.text
    return dict(answer.json()["error"])


def actions(world: World) -> list[dict[str, Any]]:
    entries = world.api.get("/api/v1/audit", params={"limit": 100}).json()["entries"]
    return [e for e in entries if e["action"].startswith("updates.")]


def test_an_appliance_without_a_channel_says_what_to_set(world: World) -> None:
    found = world.settings()
    assert found["site"] == S
    assert (found["service_url"], found["service_url_source"]) == ("", "none")
    assert (found["service_ca"], found["service_ca_source"]) == ([], "system")
    assert (found["trusted_root"], found["trusted_root_source"]) == (None, "none")
    error = error_of(world.api.post("/api/v1/updates/check"), 409)
    assert error["type"] == "UpdatesNotConfiguredError"
    assert (
        "No update service is configured: set its URL under Update Service Settings"
        in (error["message"])
    )


def test_wrong_values_are_refused_with_the_reason_and_change_nothing(
    world: World, tmp_path: Path
) -> None:
    before = world.settings()
    forged = json.loads(world.root)
    forged["signed"]["version"] = 7
    timestamp = world.vendor.site_dir(S) / "metadata" / "timestamp.json"
    refusals = [
        ({"service_url": "ftp://updates.example"}, "is not an update service URL"),
        ({"service_url": "https://updates.example:99999"}, "is not a host name or address"),
        ({"service_url": "https://up dates.example"}, "is not an update service URL"),
        (
            {"service_url": "https://updates.example", "service_ca_pem": "not a certificate"},
            "The update service CA is not a PEM certificate",
        ),
        ({"trusted_root_json": json.dumps(forged)}, "is not signed by the keys it names"),
        ({"trusted_root_json": timestamp.read_text()}, "is not a TUF root.json"),
        ({"trusted_root_json": "{"}, "is not a TUF root.json"),
        ({"service_ca_pem": " "}, None),  # blank: back to the default, which it is
    ]
    for body, reason in refusals:
        answer = world.put(**body)
        if reason is None:
            assert answer.status_code == 200, answer.text
            continue
        error = error_of(answer, 400)
        assert reason in error["message"] and "Nothing was changed." in error["message"], body
    for body in ({"service_url": "https://" + "a" * 2000}, {"other": 1}, {"service_url": 5}):
        assert world.put(**body).status_code == 422, body
    assert world.settings() == before


def test_concurrent_changes_are_all_answered_and_one_of_them_holds(world: World) -> None:
    urls = [f"https://updates-{n}.example" for n in range(8)]
    with ThreadPoolExecutor(len(urls)) as pool:
        answers = list(pool.map(lambda url: world.put(service_url=url).status_code, urls))
    assert answers == [200] * len(urls)
    found = world.settings()
    assert found["service_url"] in urls and found["service_url_source"] == "appliance"


def test_without_the_services_ca_the_tls_failure_is_named_as_such(world: World) -> None:
    answer = world.put(service_url=world.service.url + "/", trusted_root_json=world.root)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["service_url"] == world.service.url  # no trailing slash kept
    assert found["trusted_root"]["version"] == 1 and found["trusted_root_source"] == "appliance"
    error = error_of(world.api.post("/api/v1/updates/check"), 503)
    assert error["type"] == "UpdateTlsError"
    assert error["message"].startswith("The update service's TLS certificate is not trusted")
    assert "certificate verify failed" in error["message"]
    assert "cannot be reached" not in error["message"]
    assert "Update Service Settings" in error["message"]
    other = TestCa("Some other CA").pem().decode()
    assert world.put(service_ca_pem=other).status_code == 200
    error = error_of(world.api.post("/api/v1/updates/check"), 503)
    assert error["type"] == "UpdateTlsError"
    assert "updates.check.failed" in [e["action"] for e in actions(world)]


def test_with_the_services_ca_set_the_check_works_and_each_change_is_audited(
    world: World,
) -> None:
    answer = world.put(service_ca_pem=world.service.ca_file.read_text())
    assert answer.status_code == 200, answer.text
    ca = answer.json()["service_ca"]
    assert [c["subject"] for c in ca] == ["Bastion test update service CA"]
    checked = world.api.post("/api/v1/updates/check")
    assert checked.status_code == 200, checked.text
    assert [r["name"] for r in checked.json()["releases"]] == ["base 1.1"]
    changes = [e for e in actions(world) if e["action"] == "updates.settings"]
    assert changes and changes[0]["details"]["service_ca"] == [ca[0]["sha256"]]


def test_null_returns_a_setting_to_its_default(world: World) -> None:
    answer = world.put(service_ca_pem=None)
    assert answer.status_code == 200, answer.text
    assert answer.json()["service_ca_source"] == "system"
    assert answer.json()["service_url_source"] == "appliance"  # left out: unchanged
    assert error_of(world.api.post("/api/v1/updates/check"), 503)["type"] == "UpdateTlsError"


def test_the_console_shows_and_changes_the_channel(world: World) -> None:
    bad = world.console("--url", "ftp://updates.example")
    assert bad.exit_code == 2 and "is not an update service URL" in bad.output
    unknown = world.console("--default", "everything")
    assert unknown.exit_code == 2 and "--default takes url, ca, trusted-root" in unknown.output
    changed = world.console("--ca-file", str(world.service.ca_file))
    assert changed.exit_code == 0, changed.output
    assert "Bastion test update service CA" in changed.output
    assert "set on this appliance" in changed.output
    checked = CliRunner().invoke(
        bastion_command,
        ["appliance", "updates", "check", "--data", str(world.appliance.data_dir)],
        env=world.appliance.env,
    )
    assert checked.exit_code == 0 and "base 1.1" in checked.output, checked.output
    reset = world.console("--default", "url", "--default", "trusted-root")
    assert reset.exit_code == 0, reset.output
    assert "not configured (BASTION_UPDATE_SERVICE_URL is empty)" in reset.output
    assert world.settings()["trusted_root_source"] == "none"
