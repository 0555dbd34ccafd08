"""An administrator's first hour on a fresh appliance, in headless Chromium at 1280 px:
the pages fit the window, the appliance's own certificate is not called broken, the
Updates page says what cannot work yet, a refused form's address can be opened again,
refused password changes are audited, and the NTP status speaks plainly."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from bastion.accounts.rules import password_hint
from tests.support import web
from tests.support.appliance import RunningAppliance, start_appliance

NEW_PASSWORD = "a long and private passphrase"
OTHER_PASSWORD = "another long passphrase"
WIDTH = 1280
CERTIFICATES = "/appliance/security/certificates"
LONG_NAMES = (
    "support-portal.customer-one.example.com second-name.customer-one.example.com "
    "remote-access.eu-west.customer-one.example.com 192.0.2.10 third.example.org"
)

pytestmark = pytest.mark.browser

FITS = """() => {
  const page = document.documentElement;
  const bar = document.querySelector(".topbar").getBoundingClientRect();
  return {scroll: page.scrollWidth, client: page.clientWidth, bar: bar.width, left: bar.left};
}"""

NARROW_CELLS = """(table) => [...table.querySelectorAll("tbody > tr:not(.actions-row) > td")]
  .map(cell => ({
    text: cell.innerText.trim(),
    width: cell.getBoundingClientRect().width,
    em: parseFloat(getComputedStyle(cell).fontSize),
  }))
  .filter(cell => cell.text.length > 24 && cell.width < 9 * cell.em)"""


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    """One fresh appliance for the module; its factory password already changed."""
    with start_appliance(tmp_path_factory.mktemp("first-hour"), host="127.0.0.53") as running:
        with running.client() as client:
            web.sign_in(client, "admin", "password")
            assert web.change_password(client, "password", NEW_PASSWORD).status_code == 303
        yield running


@pytest.fixture
def page(appliance: RunningAppliance, chromium: Browser) -> Iterator[Page]:
    """Signed in as admin. A console error other than a refused form's own status (a broken
    content security policy, a script error) fails the test."""
    problems: list[str] = []

    def remember(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    context = chromium.new_context(
        ignore_https_errors=True, viewport={"width": WIDTH, "height": 800}
    )
    opened = context.new_page()
    opened.on("console", remember)
    opened.goto(f"{appliance.url}/login")
    opened.fill("#username", "admin")
    opened.fill("#password", NEW_PASSWORD)
    opened.get_by_role("button", name="Sign in").click()
    expect(opened).to_have_url(re.compile(r"/login/home$"))
    yield opened
    context.close()
    assert problems == [], "a page broke its content security policy"


def change_password(page: Page, current: str, new: str, confirmation: str) -> None:
    page.fill("#current_password", current)
    page.fill("#new_password", new)
    page.fill("#confirm_password", confirmation)
    page.get_by_role("button", name="Change password").click()


def check_fits(page: Page, where: str) -> None:
    shown = page.evaluate(FITS)
    assert shown["scroll"] <= shown["client"] == WIDTH, f"{where} is wider than the window"
    assert shown["left"] == 0 and shown["bar"] == shown["client"], f"{where}: top bar stops short"


def test_refused_password_changes_are_in_the_audit_log(
    page: Page, appliance: RunningAppliance
) -> None:
    page.goto(f"{appliance.url}/login/change-password")
    expect(page.locator("#password-hint")).to_have_text(password_hint(changing_own=True))
    change_password(page, "not the password", OTHER_PASSWORD, OTHER_PASSWORD)
    expect(page.locator("#form-error")).to_contain_text("The current password is wrong")
    change_password(page, NEW_PASSWORD, OTHER_PASSWORD, "a different long passphrase")
    expect(page.locator("#form-error")).to_contain_text("confirmation differ")

    page.goto(f"{appliance.url}/login/audit?action=account.password_change.failed")
    rows = page.locator("#audit tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("reason=confirmation differs")
    expect(rows.nth(1)).to_contain_text("reason=wrong current password")


def test_every_page_fits_1280_px_and_table_cells_stay_readable(
    page: Page, appliance: RunningAppliance
) -> None:
    base = appliance.url
    page.goto(f"{base}{CERTIFICATES}")
    page.fill("#names", LONG_NAMES)
    page.fill("#validity_days", "20")  # a certificate with long warnings
    page.get_by_role("button", name="Create certificate").click()
    expect(page.locator("#notice")).to_contain_text("added")

    visited = ["/login/home", "/appliance/status/basics"]
    for start in visited[:2]:
        page.goto(f"{base}{start}")
        links = page.locator("nav.sidebar a").evaluate_all("links => links.map(a => a.pathname)")
        visited += [link for link in links if link not in visited]
    assert "/login/audit" in visited and CERTIFICATES in visited
    for path in visited:
        page.goto(f"{base}{path}")
        check_fits(page, path)

    page.goto(f"{base}/login/audit")
    expect(page.locator("#audit")).to_contain_text("fingerprint=")  # 64 characters in one token
    check_fits(page, "the audit log")
    page.goto(f"{base}{CERTIFICATES}")
    assert page.locator("#certificates").evaluate(NARROW_CELLS) == [], "cells squeezed to a sliver"


def test_the_appliances_own_certificate_is_issued_by_its_internal_ca_not_broken(
    page: Page, appliance: RunningAppliance
) -> None:
    page.goto(f"{appliance.url}{CERTIFICATES}")
    own = page.locator("#certificates tbody tr:not(.actions-row)").first
    expect(own.locator("#default-badge")).to_be_visible()
    expect(own.locator(".warning")).to_have_count(0)
    expect(own).to_contain_text("Issued by this appliance's internal CA")
    link = own.get_by_role("link", name="internal CA certificate")
    downloaded = page.request.get(f"{appliance.url}{link.get_attribute('href')}")
    assert downloaded.ok and downloaded.body() == appliance.ca_file.read_bytes()
    expect(page.locator("#internal-ca")).to_contain_text(str(appliance.ca_file))


def test_updates_without_an_update_service_say_what_cannot_work(
    page: Page, appliance: RunningAppliance
) -> None:
    page.goto(f"{appliance.url}/appliance/updates")
    expect(page.get_by_role("button", name="Check for updates")).to_be_disabled()
    refused = page.locator("#online-refused")
    expect(refused).to_contain_text("No update service is configured")
    expect(refused).to_contain_text("Manual Installation below")
    expect(page.get_by_role("button", name="Upload and verify")).to_be_disabled()
    expect(page.locator("#bundle-refused")).to_be_visible()
    main = page.locator("main").inner_text()
    assert main.count("carries no update trusted root") == 1, main
    assert "/appliance > Updates" not in main  # nothing sends you to the page you are on


def test_a_refused_forms_address_opened_again_leads_back_to_its_page(
    page: Page, appliance: RunningAppliance
) -> None:
    ip_configuration = f"{appliance.url}/appliance/networking/ip-configuration"
    page.goto(ip_configuration)
    page.fill("#address", "localhost:443")
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#form-error")).to_contain_text("is not an IP address")
    assert page.url.endswith("/appliance/networking/listen-addresses")

    again = page.goto(page.url)  # the address left in the bar, opened again
    assert again is not None and again.ok, f"{page.url}: {again and again.status}"
    expect(page).to_have_url(ip_configuration)
    expect(page.locator("#address")).to_be_visible()


def test_an_ntp_server_name_that_does_not_resolve_is_said_so(
    page: Page, appliance: RunningAppliance
) -> None:
    page.goto(f"{appliance.url}/appliance/networking/ip-configuration")
    page.fill("#server", "ntp.invalid")
    page.get_by_role("button", name="Save").click()
    page.goto(f"{appliance.url}/appliance/status/basics")
    status = page.locator("#clock-status")
    expect(status).to_contain_text("ntp.invalid cannot be reached: the NTP server name")
    assert "Errno" not in status.inner_text()
