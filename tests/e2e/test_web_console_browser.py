"""The web console in headless Chromium, all real processes: an appliance (supervisor,
worker, gateway process) and a Jump Client installed from an installer made through the
API and run as the service runs it (sessions on), over real TLS. The administrator signs
in, opens /console, sees a refused start's message, starts a session, runs a command in
the xterm.js terminal and sees its output; on another page watches the session from
Session Reports (what was shown, then what follows), ends it there, and starts and ends
another from the console."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import sign_in_the_first_time
from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import RunningAppliance, free_port, start_appliance
from tests.support.endpoints import Client, eventually, install_and_run

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
SITE = "console.example.test"
HOST = "127.0.0.49"


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[RunningAppliance]:
    web, gateway = free_port(HOST), free_port(HOST)
    env = {
        "BASTION_GATEWAY_LISTEN": f"{HOST}:{gateway}",
        "BASTION_GATEWAY_ADDRESS": f"{HOST}:{gateway}",
        "BASTION_PUBLIC_URL": f"https://{HOST}:{web}",  # the sessions' rendezvous
    }
    extra = ["--hostname", SITE]
    with start_appliance(tmp_path, host=HOST, port=web, env=env, extra_args=extra) as a:
        yield a


@pytest.fixture
def endpoint(appliance: RunningAppliance, tmp_path: Path) -> Iterator[Client]:
    token = get_token(appliance, create_client(appliance, "console")).json()["access_token"]
    with appliance.client(headers=bearer(token), timeout=60) as api:
        made = api.post(
            "/api/v1/jump-clients/installers", json={"mode": "active", "jump_group": "Servers"}
        )
        assert made.status_code == 201, made.text
        installer = tmp_path / "installer.json"
        installer.write_text(made.json()["installer"])
        client = install_and_run(installer, tmp_path / "endpoint", tmp_path / "endpoint.log")
        try:

            def online() -> bool:
                listed: list[dict[str, Any]] = api.get("/api/v1/jump-clients").json()["clients"]
                return any(c["status"] == "online" for c in listed)

            eventually(online, what="the Jump Client online")
            yield client
        finally:
            client.stop()


def test_a_shell_in_the_browser_runs_a_command_and_ends(
    appliance: RunningAppliance, endpoint: Client, chromium: Browser
) -> None:
    context = chromium.new_context(ignore_https_errors=True)
    page = context.new_page()
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.goto(f"{appliance.url}/console")
    sign_in_the_first_time(page)
    page.get_by_role("navigation").get_by_role("link", name="Web Console").click()
    expect(page).to_have_url(re.compile(r"/console$"))
    row = page.locator("#jump-items tbody tr").first
    expect(row).to_contain_text("Servers")
    status = page.locator("#session-status")

    unscripted = context.new_page()  # until the page's script runs, nothing can be started
    unscripted.route("**/web-console.js", lambda route: route.abort())
    unscripted.goto(f"{appliance.url}/console")
    expect(unscripted.locator("#jump-items tbody tr").first).to_contain_text("Servers")
    expect(unscripted.get_by_role("button", name="Start session").first).to_be_disabled()
    unscripted.close()

    row.locator("input[name=csrf_token]").evaluate("input => { input.value = 'forged'; }")
    row.get_by_role("button", name="Start session").click()
    expect(page.locator("#console-error")).to_contain_text("not sent from this site")
    expect(status).to_have_text("Not started.")

    page.reload()
    row.get_by_role("button", name="Start session").click()
    expect(page.locator("#console-error")).to_be_hidden()
    expect(status).to_contain_text("Connected to", timeout=30_000)
    page.locator("#terminal").click()
    page.keyboard.type("echo hello-$((6*7))")
    page.keyboard.press("Enter")
    expect(page.locator("#terminal .xterm-rows")).to_contain_text("hello-42", timeout=20_000)

    watcher = context.new_page()  # the administrator watches the session on another page
    watcher.on("pageerror", lambda error: failures.append(str(error)))
    watcher.goto(f"{appliance.url}/login/reports")
    live_row = watcher.locator("#sessions tbody tr").first
    live_row.get_by_role("link", name="Watch").click()
    expect(watcher.locator("#watch-status")).to_contain_text("Watching admin on", timeout=20_000)
    shown = watcher.locator("#terminal .xterm-rows")
    expect(shown).to_contain_text("hello-42", timeout=20_000)  # the screen so far
    page.locator("#terminal").click()
    page.keyboard.type("echo watched-$((2*21))")
    page.keyboard.press("Enter")
    expect(shown).to_contain_text("watched-42", timeout=20_000)  # and what follows

    watcher.goto(f"{appliance.url}/login/reports")
    watcher.locator("#sessions tbody tr").first.get_by_role("button", name="End").click()
    expect(status).to_have_text("The session ended: ended by admin", timeout=20_000)
    expect(page.get_by_role("button", name="End session")).to_be_disabled()
    expect(watcher.locator("#sessions tbody tr").first).to_contain_text("ended by admin")

    page.reload()
    row.get_by_role("button", name="Start session").click()
    expect(status).to_contain_text("Connected to", timeout=30_000)
    page.get_by_role("button", name="End session").click()
    expect(status).to_have_text("The session ended: ended by the representative")
    expect(page.get_by_role("button", name="End session")).to_be_disabled()
    assert failures == []
    assert "Traceback" not in appliance.log(), appliance.log()[-3000:]
    assert "Traceback" not in endpoint.output(), endpoint.output()[-3000:]
