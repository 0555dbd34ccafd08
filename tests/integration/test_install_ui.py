"""Installing site releases from the Updates page, the API and the console (R4, R5).

One real appliance (supervisor + worker) on 127.0.0.82 reaches a real update
service on 127.0.0.81 that offers site 1.1.0 and site 2.0.0, both real wheels
of this checkout. The tests run in order: the API installs 1.1.0; 2.0.0, a new
major version, asks for its licence and is scheduled and cancelled from the
API, the page and the console; a browser installs it from the page. Last, the
console installs 2.1.0, whose health check fails, and follows it to its rollback.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, expect
from typer.testing import CliRunner

from bastion.entrypoints.cli import app as bastion_command
from tests.integration._update_env import UpdateService, Vendor, service
from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.releases import project_wheel
from tests.support.web import change_password, csrf_of, sign_in

SERVICE_HOST, APPLIANCE_HOST = "127.0.0.81", "127.0.0.82"
S = "support.acme.example"
NEW_PASSWORD = "a brand new secret phrase"
INSTALL = "/api/v1/updates/install"
SIGNED_OUT = "You were signed out because the appliance was updated to site {}"
BROKEN = "2.1.0"
"""Its health check fails: installing it rolls back."""


@dataclass
class World:
    vendor: Vendor
    service: UpdateService
    root_file: Path

    def env(self) -> dict[str, str]:
        return {
            **self.service.env(),
            "BASTION_UPDATE_SITE": S,
            "BASTION_UPDATE_TRUSTED_ROOT": str(self.root_file),
            "BASTION_INSTALL_PROBATION_SECONDS": "2",
            "BASTION_INSTALL_DRAIN_SECONDS": "5",
        }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("install-ui")
    vendor = Vendor.for_site(root / "vendor", S)
    for version in ("1.1.0", "2.0.0", "2.1.0"):
        wheel = project_wheel(version, root / "wheels", broken_health=version == BROKEN)
        vendor.publish_wheel("site", version, wheel, "--site", S)
    root_file = root / "root.json"
    root_file.write_bytes(vendor.trusted_root())
    with service(vendor, SERVICE_HOST) as running:
        yield World(vendor, running, root_file)


def cli(world: World, appliance: RunningAppliance, *args: str, answer: str = "") -> Any:
    return CliRunner().invoke(
        bastion_command,
        ["appliance", *args, "--data", str(appliance.data_dir)],
        env=world.env(),
        input=answer,
    )


@pytest.fixture(scope="module")
def appliance(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    tmp = tmp_path_factory.mktemp("appliance")
    with start_appliance(tmp, host=APPLIANCE_HOST, env=world.env()) as running:
        world.vendor.enrol(S, running.data_dir, world.env())
        with browser(running, first=True):
            pass
        yield running


@pytest.fixture(scope="module")
def api(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    token = get_token(appliance, create_client(appliance, "installer")).json()["access_token"]
    with appliance.client(headers=bearer(token), timeout=60) as client:
        yield client


@contextmanager
def browser(appliance: RunningAppliance, first: bool = False) -> Iterator[httpx.Client]:
    """Signed in as admin (the first time, choosing the new password)."""
    with appliance.client(timeout=60) as client:
        sign_in(client, "admin", "password" if first else NEW_PASSWORD)
        if first:
            change_password(client, "password", NEW_PASSWORD)
        yield client


def get(client: httpx.Client, path: str) -> httpx.Response:
    """A GET that rides out the moment the old worker hands the sockets to the new one."""
    for _ in range(50):
        try:
            return client.get(path)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{path} did not answer")


def wait_idle(api: httpx.Client, install_id: str, timeout: float = 120) -> dict[str, Any]:
    """The status once this install's outcome is recorded and nothing runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, Any] = get(api, INSTALL).json()
        ours = [e for e in status["history"] if e["install_id"].startswith(install_id)]
        if status["state"] == "idle" and ours:
            return status
        time.sleep(0.3)
    raise AssertionError(f"install {install_id} did not finish in {timeout} s")


def download(api: httpx.Client, release: str) -> None:
    assert api.post("/api/v1/updates/check").status_code == 200
    done = api.post("/api/v1/updates/downloads", json={"release": release})
    assert done.status_code == 200, done.text


def audit_actions(api: httpx.Client) -> list[tuple[str, str]]:
    entries = api.get("/api/v1/audit", params={"limit": 100}).json()["entries"]
    return [(e["action"], e["target"]) for e in entries]


def in_an_hour() -> datetime:
    return (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)


def as_shown(at: datetime) -> str:
    """How the pages write a time: with its date when that is not today (near midnight)."""
    today = datetime.now(UTC).date()
    return f"{at:%H:%M} UTC" + (f" on {at:%Y-%m-%d}" if at.date() != today else "")


def test_the_api_installs_a_downloaded_site_release(
    appliance: RunningAppliance, api: httpx.Client
) -> None:
    download(api, "site 1.1.0")
    with browser(appliance) as page:
        assert page.get("/appliance/status/basics").status_code == 200
        started = api.post(INSTALL, json={"releases": ["site 1.1.0"]})
        assert started.status_code == 202, started.text
        body = started.json()
        assert body["plan"]["order"] == ["site 1.1.0"]
        assert body["plan"]["estimate_seconds"] > 0 and body["plan"]["database_bytes"] > 0
        # the estimate runs until the install is over: the probation (2 s here) included
        assert body["plan"]["watched_seconds"] == 2
        assert body["plan"]["estimate_seconds"] > 2 + body["plan"]["paused_seconds"] > 2
        status = wait_idle(api, body["install_id"])
        assert status["history"][-1]["outcome"] == "installed", status["history"][-1]
        assert get(page, "/check_health").json()["version"] == "1.1.0"
        ended = get(page, "/appliance/status/basics")
        assert ended.status_code == 303 and "ended=update" in ended.headers["location"]
        told = page.get(ended.headers["location"]).text
        assert SIGNED_OUT.format("1.1.0") in told and "Please sign in again." in told
    with browser(appliance) as page:
        basics = page.get("/appliance/status/basics").text
    assert 'id="product-version">1.1.0<' in basics
    assert re.search(r'id="last-install">site 1.1.0: installed, ', basics)
    assert 'id="last-rollback"' not in basics
    assert ("updates.install.requested", "site 1.1.0") in audit_actions(api)


def test_a_new_major_version_asks_for_its_licence_and_can_be_cancelled(
    appliance: RunningAppliance, api: httpx.Client
) -> None:
    download(api, "site 2.0.0")
    at = in_an_hour()
    request = {"releases": ["site 2.0.0"], "not_before": at.isoformat()}
    refused = api.post(INSTALL, json=request)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["type"] == "LicenceRequiredError" and error["release"] == "site 2.0.0"
    assert "Apache-2.0" in error["licence"]
    assert get(api, INSTALL).json()["state"] == "idle"
    accepted = api.post(INSTALL, json={**request, "accept_licence": True})
    assert accepted.status_code == 202, accepted.text
    assert datetime.fromisoformat(accepted.json()["not_before"]) == at
    try:
        assert ("updates.licence_accepted", "site 2.0.0") in audit_actions(api)
        status = get(api, INSTALL).json()
        assert status["state"] == "scheduled" and status["pending"]["not_before"] == at.isoformat()
        banner = f"Bastion will be updated to site 2.0.0 at {as_shown(at)};"
        with browser(appliance) as page:
            for path in ("/login/home", "/appliance/status/basics"):
                shown = page.get(path).text
                assert banner in shown and "you will be signed out then." in shown
    finally:
        cancelled = api.delete(INSTALL)
    assert cancelled.status_code == 200 and cancelled.json() == {"cancelled": True}
    assert get(api, INSTALL).json()["state"] == "idle"
    assert api.delete(INSTALL).status_code == 409
    with browser(appliance) as page:
        assert 'id="install-banner"' not in page.get("/login/home").text
    assert ("updates.install.cancelled", "scheduled install") in audit_actions(api)


def test_the_page_plans_asks_for_the_licence_schedules_and_cancels(
    appliance: RunningAppliance, api: httpx.Client
) -> None:
    with browser(appliance) as page:
        shown = page.get("/appliance/updates")
        assert "Install This Update" in shown.text and 'id="install-form"' in shown.text
        token = csrf_of(shown)
        at = in_an_hour()
        chosen = {"csrf_token": token, "releases": "site 2.0.0", "start_at": f"{at:%Y-%m-%d %H:%M}"}
        planned = page.post("/appliance/updates/installs/plan", data=chosen)
        assert planned.status_code == 200 and 'id="install-plan"' in planned.text
        assert re.search(r'id="install-order">\s*<li>site 2.0.0</li>', planned.text)
        assert re.search(r"Estimated time: <strong>[0-9.]+ s</strong>", planned.text)
        assert "then 2 s watching the new version" in planned.text
        both = page.post("/appliance/updates/installs/plan", data={**chosen, "delay_minutes": "5"})
        assert both.status_code == 400 and "either a delay or a start time" in both.text
        licence = page.post("/appliance/updates/installs", data=chosen)
        assert licence.status_code == 200 and 'id="licence-text"' in licence.text
        assert "Apache-2.0" in licence.text and 'name="accept_licence"' in licence.text
        assert get(api, INSTALL).json()["state"] == "idle"
        started = page.post(
            "/appliance/updates/installs",
            data={**chosen, "licence_shown": "1", "accept_licence": "1"},
        )
        try:
            assert started.status_code == 303, started.text
            scheduled = page.get("/appliance/updates").text
            assert 'id="install-scheduled"' in scheduled and 'id="install-cancel-form"' in scheduled
            assert f"site 2.0.0 at {as_shown(at)}; you will be signed out then." in scheduled
            assert 'src="/static/installs.js"' in scheduled
            view = page.get("/appliance/updates/installs/status").json()
            assert view["state"] == "scheduled" and view["pending"]["releases"] == "site 2.0.0"
            cancelled = page.post("/appliance/updates/installs/cancel", data={"csrf_token": token})
            assert cancelled.status_code == 200
            assert "scheduled install was cancelled" in cancelled.text
            assert 'id="install-banner"' not in cancelled.text
        finally:
            api.delete(INSTALL)
        again = page.post("/appliance/updates/installs/cancel", data={"csrf_token": token})
        assert again.status_code == 409 and "No install is scheduled." in again.text


def test_the_console_schedules_and_reports_the_status(
    world: World, appliance: RunningAppliance, api: httpx.Client
) -> None:
    at = in_an_hour()
    refused = cli(world, appliance, "install", "site 2.0.0", "--at", at.isoformat(), answer="n\n")
    assert refused.exit_code == 1 and "Nothing was installed." in refused.output
    assert get(api, INSTALL).json()["state"] == "idle"
    args = ["install", "site 2.0.0", "--at", f"{at:%Y-%m-%dT%H:%M}Z", "--no-wait"]
    scheduled = cli(world, appliance, *args, answer="y\n")
    try:
        assert scheduled.exit_code == 0, scheduled.output
        assert "1. site 2.0.0" in scheduled.output and "Estimated time:" in scheduled.output
        assert "then 2 s watching the new version" in scheduled.output
        shown = cli(world, appliance, "install-status")
        assert shown.exit_code == 0 and "scheduled" in shown.output, shown.output
        status = json.loads(cli(world, appliance, "install-status", "--json").output)
        assert status["pending"]["requested_by"].startswith("console:")
    finally:
        assert api.delete(INSTALL).status_code == 200


@pytest.mark.browser
def test_install_this_update_shows_progress_until_the_new_version(
    appliance: RunningAppliance, chromium: Browser
) -> None:
    problems: list[str] = []

    def remember(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(message.text)

    context = chromium.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.on("console", remember)
    page.goto(f"{appliance.url}/appliance/updates")
    page.fill("#username", "admin")
    page.fill("#password", NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    row = page.locator('tr[data-release="site 2.0.0"]')
    row.get_by_role("button", name="Install This Update").click()
    expect(page.locator("#install-order")).to_have_text("site 2.0.0")
    page.get_by_role("button", name="Start the install").click()
    expect(page.locator("#licence-text")).to_contain_text("Apache-2.0")
    page.check("#accept_licence")
    page.get_by_role("button", name="Install", exact=True).click()
    expect(page.locator("#install-running")).to_be_visible(timeout=20_000)
    expect(page.locator("#install-activity")).not_to_be_empty()
    expect(page.locator("#install-banner")).to_be_hidden()
    # Until the old worker has drained, it may still answer (the page's footer may say 1.1.0).
    expect(page.locator("#notice")).to_contain_text(SIGNED_OUT.format("2.0.0"), timeout=90_000)
    page.fill("#username", "admin")
    page.fill("#password", NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/appliance/updates"))
    # Signed in again during the new version's probation, the page follows the install to
    # its end and reloads to show the outcome.
    outcome = page.locator('#install-history tr[data-outcome="installed"]').first
    expect(outcome).to_contain_text("site 2.0.0", timeout=30_000)
    expect(page.locator("#install-progress")).to_have_count(0)
    expect(page.locator("#installed-site")).to_have_text("2.0.0")
    expect(page.locator("footer")).to_have_text("Bastion 2.0.0")
    context.close()
    assert problems == [], "the Updates page broke its content security policy"


def test_the_console_follows_an_install_to_its_rollback(
    world: World, appliance: RunningAppliance, api: httpx.Client
) -> None:
    download(api, f"site {BROKEN}")
    before = get(api, "/check_health").json()["version"]
    # --accept-licence: the console plans against its own installed version (see the report)
    followed = cli(world, appliance, "install", f"site {BROKEN}", "--accept-licence")
    assert followed.exit_code == 1, followed.output
    assert f"site {BROKEN} was rolled back:" in followed.output
    assert "health check" in followed.output
    assert get(api, "/check_health").json()["version"] == before
    with browser(appliance) as page:
        basics = page.get("/appliance/status/basics").text
        updates = page.get("/appliance/updates").text
        token = csrf_of(page.get("/appliance/updates"))
        again = page.post(
            "/appliance/updates/installs/plan",
            data={"csrf_token": token, "releases": f"site {BROKEN}"},
        )
        retried = page.post(
            "/appliance/updates/installs/plan",
            data={"csrf_token": token, "releases": f"site {BROKEN}", "retry": "1"},
        )
    assert f'id="last-rollback-release">site {BROKEN}<' in basics
    assert "The last install was rolled back:" in basics and "HTTP 500" in basics
    assert re.search(rf"<td>site {BROKEN}</td>\s*<td><strong>rolled back</strong>", updates)
    assert again.status_code == 409 and "was rolled back" in again.text
    assert retried.status_code == 200 and 'id="install-plan"' in retried.text
    # listed as rolled back, not installable: a retry is asked for explicitly
    listed = {r["name"]: r for r in api.get("/api/v1/updates").json()["releases"]}
    assert listed[f"site {BROKEN}"]["state"] == "rolled-back"
    assert "HTTP 500" in listed[f"site {BROKEN}"]["reason"]
    assert "only if you ask for a retry" in listed[f"site {BROKEN}"]["reason"]
    row = re.search(rf'<tr data-release="site {BROKEN}">.*?</tr>', updates, re.S)
    assert row is not None and "Retry Install" in row.group(0)
    assert "Install This Update" not in row.group(0)
    assert ("updates.install.requested", f"site {BROKEN}") in audit_actions(api)
