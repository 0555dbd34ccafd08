"""Headless Chromium on /appliance > Updates: the download progress bar runs under the CSP."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, expect

from tests.integration._update_env import Vendor, service
from tests.support.appliance import start_appliance

SITE = "support.acme.example"
NEW_PASSWORD = "a long and private passphrase"

pytestmark = pytest.mark.browser


@pytest.fixture
def vendor(tmp_path: Path) -> Vendor:
    """Made before Chromium starts: the vendor's commands run their own event loop."""
    made = Vendor(tmp_path / "vendor")
    made.init()
    made.customer("acme")
    made.site(SITE, "acme")
    made.release("base", "1.1", payload=os.urandom(20_000_000))
    made.admin("open-wave", "base:1.1", "--wave", "1")
    return made


def test_download_shows_progress_then_the_verified_result(
    tmp_path: Path, vendor: Vendor, chromium: Browser
) -> None:
    root = tmp_path / "root.json"
    root.write_bytes(vendor.trusted_root())
    problems: list[str] = []

    def remember(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    with service(vendor, "127.0.0.75") as url:
        env = {
            "BASTION_UPDATE_SERVICE_URL": url,
            "BASTION_UPDATE_SITE": SITE,
            "BASTION_UPDATE_TRUSTED_ROOT": str(root),
        }
        with start_appliance(tmp_path, host="127.0.0.76", env=env) as appliance:
            context = chromium.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.on("console", remember)
            page.goto(f"{appliance.url}/appliance/updates")
            page.fill("#username", "admin")
            page.fill("#password", "password")
            page.get_by_role("button", name="Sign in").click()
            page.fill("#current_password", "password")
            page.fill("#new_password", NEW_PASSWORD)
            page.fill("#confirm_password", NEW_PASSWORD)
            page.get_by_role("button", name="Change password").click()
            page.goto(f"{appliance.url}/appliance/updates")
            page.get_by_role("button", name="Check for updates").click()
            expect(page.locator("#notice")).to_contain_text("1 release(s) available")
            page.get_by_role("button", name="Download").click()
            expect(page).to_have_url(re.compile(r"/appliance/updates\?job="))
            expect(page.locator("#notice")).to_contain_text(
                "base 1.1 downloaded and verified", timeout=30_000
            )
            row = page.locator('tr[data-release="base 1.1"] .storage')
            expect(row).to_have_text("downloaded, verified")
            context.close()
    assert problems == [], "the Updates page broke its content security policy"
