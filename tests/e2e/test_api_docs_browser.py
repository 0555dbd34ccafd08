"""`/api/v1/docs` in headless Chromium with every other host blocked: the appliance serves
the whole page itself, under its own CSP, and it lists the API's operations."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Route, expect

from tests.support.appliance import start_appliance

pytestmark = pytest.mark.browser


def test_the_api_docs_render_with_the_outside_network_blocked(
    tmp_path: Path, chromium: Browser
) -> None:
    blocked: list[str] = []
    problems: list[str] = []

    def only_the_appliance(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own_host:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    def remember(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    with start_appliance(tmp_path, host="127.0.0.66") as appliance:
        own_host = f"{appliance.host}:{appliance.port}"
        context = chromium.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.route("**/*", only_the_appliance)
        page.on("console", remember)
        page.goto(f"{appliance.url}/api/v1/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Bastion appliance API")
        operations = page.locator(".opblock-summary-path")
        expect(operations.filter(has_text="/api/v1/oauth/token").first).to_be_visible()
        one_account = re.compile(r"/api/v1/accounts/\{account_id\}$")
        expect(operations.filter(has_text=one_account)).to_have_count(2)
        groups = operations.filter(has_text="/api/v1/accounts/{account_id}/jump-groups")
        expect(groups).to_have_count(2)
        assert operations.count() >= 40
        expect(page.locator(".auth-wrapper .authorize")).to_be_visible()
        context.close()
    assert blocked == [], "the docs page reached for another host"
    assert problems == [], "the docs page broke the CSP or failed to load"
