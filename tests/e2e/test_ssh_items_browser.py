"""An SSH Jump Item opened from the web console in headless Chromium, all real processes:
an appliance, a Jumpoint installed from its own installer and run as its service runs,
and a real OpenSSH server with no agent on another loopback address. The administrator
vaults the server's key, makes the item on the Jumpoints page, opens /console, starts a
session on the item, runs a command in the xterm.js terminal, exits with a status, and
finds the session in Session Reports; the key is on no page."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import sign_in_the_first_time
from tests.support.endpoints import Client
from tests.support.sessions import Site, clients, online_endpoint, session_site
from tests.support.sshd import SshServer, ssh_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="needs sshd"),
]
SITE = "ssh-console.example.test"
HOST = "127.0.0.147"
SSH_HOST = "127.0.0.148"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with session_site(tmp_path, HOST, SITE) as running:
        yield running


@pytest.fixture
def jumpoint(site: Site) -> Iterator[Client]:
    with online_endpoint(site, group="Databases", kind="jumpoint") as client:
        yield client


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    with ssh_server(tmp_path / "sshd", SSH_HOST) as server:
        yield server


def test_an_ssh_item_opens_in_the_browser_runs_a_command_and_exits(
    site: Site, jumpoint: Client, sshd: SshServer, chromium: Browser
) -> None:
    context = chromium.new_context(ignore_https_errors=True)
    page = context.new_page()
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.goto(f"{site.appliance.url}/login/jump/jumpoints")
    sign_in_the_first_time(page)
    page.goto(f"{site.appliance.url}/login/jump/jumpoints")

    vault = page.locator("#add-credential")
    vault.get_by_label("Name", exact=True).fill("db key")
    vault.get_by_label("Kind").select_option("private_key")
    vault.get_by_label("Secret").fill(sshd.client_key)
    vault.get_by_role("button", name="Store in the vault").click()
    expect(page.locator("#credentials")).to_contain_text("db key")

    jumpoint_id = next(c["id"] for c in clients(site) if c["kind"] == "jumpoint")
    item = page.locator("#add-ssh-item")
    item.get_by_label("Name", exact=True).fill("db-ssh")
    item.get_by_label("Jumpoint").select_option(str(jumpoint_id))
    item.get_by_label("Host", exact=True).fill(sshd.host)
    item.get_by_label("Port").fill(str(sshd.port))
    item.get_by_label("User name").fill(sshd.username)
    item.get_by_label("Credential").select_option(label="db key")
    item.get_by_label("Host key").fill(sshd.host_key)
    item.get_by_label("Jump Group").fill("Databases")
    item.get_by_role("button", name="Add the SSH Jump Item").click()
    expect(page.locator("#ssh-items")).to_contain_text("db-ssh")

    page.get_by_role("navigation").get_by_role("link", name="Web Console").click()
    expect(page).to_have_url(re.compile(r"/console$"))
    row = page.locator("#jump-items tbody tr", has_text="db-ssh")
    expect(row).to_contain_text(sshd.host)
    status = page.locator("#session-status")
    row.get_by_role("button", name="Start session").click()
    expect(status).to_contain_text("Connected to", timeout=30_000)
    page.locator("#terminal").click()
    page.keyboard.type("echo through-ssh-$((6*7))")
    page.keyboard.press("Enter")
    expect(page.locator("#terminal .xterm-rows")).to_contain_text("through-ssh-42", timeout=20_000)
    page.keyboard.type("exit 7")
    page.keyboard.press("Enter")
    expect(status).to_contain_text("exited with code 7", timeout=20_000)

    page.goto(f"{site.appliance.url}/login/reports")
    report = page.locator("#sessions tbody tr").first
    expect(report).to_contain_text("db-ssh", timeout=20_000)
    expect(report).to_contain_text("the remote shell exited with code 7")
    secret = sshd.client_key.strip().splitlines()[1]
    for shown in ("/console", "/login/jump/jumpoints", "/login/reports"):
        page.goto(f"{site.appliance.url}{shown}")
        assert secret not in page.content() and "PRIVATE KEY" not in page.content()
    assert failures == []
    assert "Traceback" not in site.appliance.log(), site.appliance.log()[-3000:]
    assert "Traceback" not in jumpoint.output(), jumpoint.output()[-3000:]
