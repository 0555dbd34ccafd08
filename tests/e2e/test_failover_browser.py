"""The Failover page in headless Chromium, with two real appliances on their own loopback
addresses over real TLS: an administrator of the intended primary is refused with what
was wrong (the form keeps what was typed), establishes the pair, and syncs at once; on
the backup, now holding the primary's accounts, the primary's pages are hidden; the
backup becomes the primary from its page; breaking the pair leaves both standalone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import NEW_PASSWORD, sign_in_the_first_time
from tests.support.sessions import Site, session_site

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
SITE = "site.failover-page.test"
KEY = "the pair's own inter-appliance key"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Site, Site]]:
    with (
        session_site(tmp_path, "127.0.0.51", SITE) as primary,
        session_site(tmp_path, "127.0.0.52", SITE) as backup,
    ):
        for site in (primary, backup):
            answer = site.api.put("/api/v1/failover/key", json={"key": KEY})
            assert answer.status_code == 204, answer.text
        yield primary, backup


def test_the_failover_page_refuses_then_establishes_and_syncs_now(
    pair: tuple[Site, Site], chromium: Browser
) -> None:
    primary, backup = pair
    context = chromium.new_context(ignore_https_errors=True)
    page = context.new_page()
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.goto(f"{primary.appliance.url}/login/management/failover")
    sign_in_the_first_time(page)
    page.get_by_role("navigation").get_by_role("link", name="Failover").click()
    expect(page).to_have_url(re.compile(r"/login/management/failover$"))
    expect(page.locator("#failover-role")).to_have_text("none")
    expect(page.get_by_role("button", name="Sync Now")).to_have_count(0)

    page.fill("#backup_host", SITE)  # the shared site hostname is refused
    page.fill("#backup_port", str(backup.appliance.port))
    page.fill("#reverse_host", primary.appliance.host)
    page.fill("#reverse_port", str(primary.appliance.port))
    page.get_by_role("button", name="Establish").click()
    expect(page.locator("#form-error")).to_contain_text("shared site hostname")
    expect(page.locator("#backup_host")).to_have_value(SITE)
    expect(page.locator("#reverse_port")).to_have_value(str(primary.appliance.port))

    page.fill("#backup_host", backup.appliance.host)
    page.get_by_role("button", name="Establish").click()
    expect(page.locator("#notice")).to_contain_text("now the primary", timeout=30_000)
    expect(page.locator("#failover-role")).to_have_text("primary")
    expect(page.locator("#failover-peer")).to_contain_text(backup.appliance.host)

    page.get_by_role("button", name="Sync Now").click()
    expect(page.locator("#notice")).to_contain_text("Synced: ok", timeout=60_000)
    expect(page.locator("#last-sync")).to_contain_text("ok")
    with backup.appliance.client() as client:
        health = client.get("/check_health").json()
    assert health["failover_role"] == "backup" and health["last_data_sync_status"] == "ok"
    page.goto(page.url)  # opening the last form's address again leads back to the page
    expect(page).to_have_url(re.compile(r"/login/management/failover$"))

    # The backup now holds the primary's accounts, and hides the primary's pages.
    on_backup = context.new_page()
    on_backup.goto(f"{backup.appliance.url}/login")
    on_backup.fill("#username", "admin")
    on_backup.fill("#password", NEW_PASSWORD)
    on_backup.get_by_role("button", name="Sign in").click()
    expect(on_backup).to_have_url(re.compile(r"/login/home$"))
    on_backup.goto(f"{backup.appliance.url}/login/users")
    expect(on_backup).to_have_url(re.compile(r"/login/management/failover\?hidden=1$"))
    expect(on_backup.locator("#notice")).to_contain_text("That page is the primary's")
    expect(on_backup.locator("#backup-notice")).to_contain_text(primary.appliance.host)
    expect(on_backup.locator("#failover-role")).to_have_text("backup")
    navigation = on_backup.get_by_role("navigation")
    expect(navigation.get_by_role("link", name="Users")).to_have_count(0)
    expect(navigation.get_by_role("link", name="Failover")).to_have_count(1)

    # Become Primary on the backup's page: the roles swap (with a sync first)
    on_backup.goto(f"{backup.appliance.url}/login/management/failover")
    on_backup.get_by_role("button", name="Become Primary").click()
    expect(on_backup.locator("#notice")).to_contain_text("now the primary", timeout=60_000)
    expect(on_backup.locator("#failover-role")).to_have_text("primary")
    expect(on_backup.get_by_role("navigation").get_by_role("link", name="Users")).to_have_count(1)
    page.goto(f"{primary.appliance.url}/login/management/failover")
    expect(page.locator("#failover-role")).to_have_text("backup")
    expect(page.locator("#role-since")).not_to_be_empty()
    expect(page.get_by_role("button", name="Become Primary")).to_have_count(1)

    page.goto(f"{primary.appliance.url}/login/management/failover")
    page.get_by_role("button", name="Break Failover Relationship").click()
    expect(page.locator("#notice")).to_contain_text("Its peer is standalone too.")
    expect(page.locator("#failover-role")).to_have_text("none")
    # the backup took the primary role: it serves the site certificate, the primary's
    backup.appliance.trust, backup.appliance.verify_hostname = [primary.appliance.ca_file], False
    with backup.appliance.client() as client:
        assert client.get("/check_health").json()["failover_role"] == "none"
    on_backup.goto(f"{backup.appliance.url}/login/users")  # shown again on a standalone
    expect(on_backup).to_have_url(re.compile(r"/login/users$"))
    assert failures == []
    assert "Traceback" not in primary.appliance.log()
    assert "Traceback" not in backup.appliance.log()
