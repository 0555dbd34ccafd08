"""The Jump pages in headless Chromium against a real appliance: make an installer (it
downloads, and is listed as usable), see a registered client in the list and on its own
page, edit it, and change the Maximum Number of Concurrent Jump Client Upgrades."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import sign_in_the_first_time
from tests.support.appliance import free_port, start_appliance

pytestmark = pytest.mark.browser
SITE = "pages.example.test"
HOST = "127.0.0.44"


def test_an_administrator_makes_an_installer_sees_the_client_and_sets_the_cap(
    tmp_path: Path, chromium: Browser
) -> None:
    web = free_port(HOST)
    env = {"BASTION_PUBLIC_URL": f"https://{HOST}:{web}", "BASTION_GATEWAY_LISTEN": "off"}
    with start_appliance(
        tmp_path, host=HOST, port=web, env=env, extra_args=["--hostname", SITE]
    ) as a:
        context = chromium.new_context(ignore_https_errors=True, accept_downloads=True)
        page = context.new_page()
        page.goto(f"{a.url}/login/jump/installer")
        sign_in_the_first_time(page)
        page.goto(f"{a.url}/login/jump/installer")
        page.select_option("#mode", "passive")
        page.fill("#jump_group", "Laptops")
        page.fill("#tag", "finance")
        page.fill("#valid_minutes", "60")
        with page.expect_download() as downloaded:
            page.get_by_role("button", name="Download installer").click()
        file = tmp_path / "installer.json"
        downloaded.value.save_as(file)
        installer = json.loads(file.read_text())
        assert (installer["site"], installer["mode"], installer["tag"]) == (
            SITE,
            "passive",
            "finance",
        )
        page.goto(f"{a.url}/login/jump/installer")
        expect(page.locator("#installers tbody tr").first).to_contain_text("usable")

        installed = subprocess.run(
            [
                sys.executable,
                "-m",
                "bastion",
                "jump-client",
                "install",
                str(file),
                "--dir",
                str(tmp_path / "c"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert installed.returncode == 0, installed.stdout + installed.stderr

        page.get_by_role("navigation").get_by_role("link", name="Jump Clients").click()
        expect(page).to_have_url(re.compile(r"/login/jump/jump-clients$"))
        row = page.locator("#jump-clients tbody tr").first
        expect(row).to_contain_text("passive")
        expect(row).to_contain_text("Laptops")
        row.get_by_role("link").click()
        page.fill("#name", "Finance laptop 7")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator("h1")).to_have_text("Finance laptop 7")

        page.goto(f"{a.url}/login/jump/jump-clients")
        page.fill("#max_concurrent_upgrades", "7")
        page.get_by_role("button", name="Save settings").click()
        expect(page.locator("#max_concurrent_upgrades")).to_have_value("7")
        expect(page.locator("#fleet-progress")).to_contain_text("1 of 1 upgraded")
