"""Headless Chromium against a real appliance process: first sign-in through to Status > Basics."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Response,
    expect,
)

from bastion.platform import build
from tests.support.appliance import start_appliance

NEW_PASSWORD = "a long and private passphrase"

pytestmark = pytest.mark.browser


def sign_in_the_first_time(page: Page) -> None:
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("#username", "admin")
    page.fill("#password", "password")
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(re.compile(r"/login/change-password$"))
    expect(page.locator("#forced-change")).to_contain_text("factory password")
    page.fill("#current_password", "password")
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page).to_have_url(re.compile(r"/login/home"))
    expect(page.locator("#signed-in-user")).to_have_text("admin")


def check_status_basics(page: Page) -> None:
    expect(page).to_have_url(re.compile(r"/appliance/status/basics$"))
    expect(page.locator("#product-version")).to_have_text(build.site_version())
    expect(page.locator("#build")).to_have_text(re.compile(r"^[0-9a-f]{12}$"))
    expect(page.locator("#base-version")).to_contain_text(build.BASE_VERSION)
    expect(page.locator("#uptime")).to_have_text(re.compile(r"^\d+d \d\dh \d\dm \d\ds$"))
    shown = datetime.strptime(page.locator("#clock-utc").inner_text(), "%Y-%m-%d %H:%M:%S UTC")
    assert abs(shown.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)
    expect(page.locator("#clock-status")).to_contain_text("No NTP server is configured.")


def test_first_sign_in_then_status_basics_shows_version_and_clock(
    tmp_path: Path, chromium: Browser
) -> None:
    problems: list[str] = []

    def remember_console_error(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    def remember_failed_load(response: Response) -> None:
        if response.status >= 400 and response.request.method == "GET":
            problems.append(f"{response.status} {response.url}")

    with start_appliance(tmp_path, host="127.0.0.31") as appliance:
        context = chromium.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.on("console", remember_console_error)
        page.on("response", remember_failed_load)
        page.goto(f"{appliance.url}/appliance")
        sign_in_the_first_time(page)

        page.get_by_role("banner").get_by_role("link", name="Appliance interface").click()
        check_status_basics(page)
        page.get_by_role("button", name="Measure now").click()
        check_status_basics(page)

        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/login$"))
        context.close()
    assert problems == [], "a page broke its content security policy or failed to load"
