"""Headless Chromium on /appliance > Updates: the download progress bar runs under the CSP;
an administrator sets the update service, its CA and the trusted root on the page."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

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

    with service(vendor, "127.0.0.75") as running:
        env = {
            **running.env(),
            "BASTION_UPDATE_SITE": SITE,
            "BASTION_UPDATE_TRUSTED_ROOT": str(root),
        }
        with start_appliance(tmp_path, host="127.0.0.76", env=env) as appliance:
            context = chromium.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.on("console", remember)
            first_sign_in(page, appliance.url)
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


def first_sign_in(page: Page, url: str) -> None:
    page.goto(f"{url}/appliance/updates")
    page.fill("#username", "admin")
    page.fill("#password", "password")
    page.get_by_role("button", name="Sign in").click()
    page.fill("#current_password", "password")
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()


def save(page: Page, **fields: str) -> None:
    for name, value in fields.items():
        page.fill(f"#{name}", value)
    page.get_by_role("button", name="Save update service settings").click()


def test_the_update_service_its_ca_and_the_root_are_set_on_the_page(
    tmp_path: Path, vendor: Vendor, chromium: Browser
) -> None:
    """An appliance with none of BASTION_UPDATE_SERVICE_URL, _CA_FILE or _TRUSTED_ROOT set."""
    with (
        service(vendor, "127.0.0.77") as running,
        start_appliance(tmp_path, host="127.0.0.78", env={"BASTION_UPDATE_SITE": SITE}) as app,
    ):
        context = chromium.new_context(ignore_https_errors=True)
        page = context.new_page()
        first_sign_in(page, app.url)
        page.goto(f"{app.url}/appliance/updates")
        expect(page.locator("#channel-url")).to_contain_text("none: Manual Installation only")
        save(page, service_url="ftp://updates.example")
        expect(page.locator("#form-error")).to_contain_text("is not an update service URL")
        expect(page.locator("#service_url")).to_have_value("ftp://updates.example")
        expect(page.locator("#channel-url")).to_contain_text("none")
        root = vendor.trusted_root().decode()
        save(page, service_url=running.url, trusted_root=root)
        expect(page.locator("#notice")).to_contain_text("Update service settings saved")
        expect(page.locator("#channel-url")).to_contain_text(running.url)
        expect(page.locator("#channel-root")).to_contain_text("version 1, signed by 2 of 2 keys")
        page.get_by_role("button", name="Check for updates").click()
        error = page.locator("#form-error")
        expect(error).to_contain_text("The update service's TLS certificate is not trusted")
        expect(error).to_contain_text("certificate verify failed")
        save(page, service_ca=running.ca_file.read_text())
        expect(page.locator("#channel-ca")).to_contain_text("Bastion test update service CA")
        expect(page.locator("#channel-ca")).to_contain_text("set on this appliance")
        page.get_by_role("button", name="Check for updates").click()
        expect(page.locator("#notice")).to_contain_text("1 release(s) available")
        page.check("#service_ca_default")
        save(page)
        expect(page.locator("#channel-ca")).to_contain_text("operating system's trust store")
        context.close()
