"""The upgrade of a failover pair as one operation, with two real appliances over real
TLS and releases of this project's own source published by a real update service: a
release that fails on the backup leaves the pair as it was; the synchronous mode
upgrades the primary first and keeps the roles; the asynchronous mode upgrades the
backup first and swaps them, and goes on after the appliance that runs it was killed
half way; a base-only release upgrades the pair's bases and leaves the site version."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from bastion.entrypoints.cli import app as bastion_command
from bastion.supervisor.client import SupervisorClient
from tests.conftest import skip_or_fail
from tests.support import named
from tests.support.appliance import free_port, test_environment
from tests.support.dns_swing import resolve
from tests.support.pair_node import Node
from tests.support.pair_upgrade import (
    SITE,
    UPGRADE,
    ended,
    runbook,
    start,
    upgrade_pair,
    wait_for,
)
from tests.support.web import change_password, sign_in, submit

PASSPHRASE = "a passphrase for the backup first"
SERVICE_HOST, HOSTS = "127.0.0.190", ("127.0.0.191", "127.0.0.192")
FAILOVER = "/login/management/failover"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[named.NameServer]:
    """The site's DNS server (Debian bind9), which the pair's swing updates."""
    if not named.available():
        skip_or_fail("named (Debian bind9) is not installed")
    tmp = tmp_path_factory.mktemp("upgrade-named")
    with named.name_server(tmp, zone="upgrade.test", site=HOSTS[0]) as running:
        yield running


@pytest.fixture(scope="module")
def nodes(
    server: named.NameServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Node, Node]]:
    """A (primary) and B (backup), each pointing the site's name at itself when it takes
    the site; the update service offers a site release that fails its health check
    (1.1.0), then 1.2.0 and 1.3.0, and base 1.1.0."""
    tmp = tmp_path_factory.mktemp("pair-upgrade")

    def dns(host: str) -> dict[str, str]:
        return {
            "BASTION_FAILOVER_DNS_SERVER": server.address,
            "BASTION_FAILOVER_DNS_ZONE": server.zone,
            "BASTION_FAILOVER_DNS_NAME": SITE,
            "BASTION_FAILOVER_DNS_ADDRESS": host,
            "BASTION_FAILOVER_DNS_TSIG_KEY_FILE": str(server.key_file),
            "BASTION_GATEWAY_LISTEN": f"{host}:{free_port(host)}",  # for verify's test session
        }

    versions, broken = ["1.2.0", "1.3.0"], ["1.1.0"]
    with upgrade_pair(
        tmp, SERVICE_HOST, HOSTS, versions, broken, env_for=dns, bases=["1.1.0"]
    ) as pair:
        yield pair


def version(node: Node) -> str:
    with node.appliance.client() as client:
        return str(client.get("/check_health").json()["version"])


def steps(report: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["state"] for s in report["steps"]}


def test_the_preflight_refuses_from_the_backup_and_a_release_nobody_offers(
    nodes: tuple[Node, Node],
) -> None:
    first, second = nodes
    body = {"releases": ["site 1.2.0"], "mode": "sync", "backup_passphrase": PASSPHRASE}
    refused = second.call("POST", UPGRADE, json=body)
    assert refused.status_code == 409 and "from its primary" in refused.text, refused.text
    unknown = first.call("POST", UPGRADE, json={**body, "releases": ["site 9.9.9"]})
    assert unknown.status_code == 404 and "site 9.9.9" in unknown.text, unknown.text
    short = first.call("POST", UPGRADE, json={**body, "backup_passphrase": "short"})
    assert short.status_code == 422
    assert first.call("GET", UPGRADE).status_code == 404
    assert first.role() == "primary" and second.role() == "backup"


def test_a_release_that_fails_on_the_backup_leaves_the_pair_as_it_was(
    nodes: tuple[Node, Node],
) -> None:
    first, second = nodes
    before = version(first)
    # started from the primary's console, as an administrator on the machine would; the
    # appliance that serves goes on with the steps
    command = ["failover", "upgrade", "site 1.1.0", "--mode", "async", "--no-wait"]
    command += ["--data", str(first.appliance.data_dir)]
    env = test_environment({**first.appliance.env, "BASTION_BACKUP_PASSPHRASE": PASSPHRASE})
    done = subprocess.run(
        [sys.executable, "-m", "bastion", *command], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Started (async)" in done.stdout and PASSPHRASE not in done.stdout + done.stderr
    started = runbook(first)
    assert steps(started)["preflight"] == "done" and steps(started)["backup"] == "done"
    assert Path(started["backup_file"]).is_file() and started["backup_file"] in done.stdout
    report = wait_for(first, ended)
    assert report["state"] == "failed", report
    assert steps(report)["install_peer"] == "failed", report
    assert "established again as it was" in report["message"], report["message"]
    assert version(first) == before and version(second) == before
    assert first.role() == "primary" and second.role() == "backup"
    assert first.call("DELETE", UPGRADE).status_code == 204


def test_synchronous_upgrade_installs_the_primary_first_and_keeps_the_roles(
    nodes: tuple[Node, Node],
) -> None:
    first, second = nodes
    body = {"releases": ["site 1.2.0"], "mode": "sync", "backup_passphrase": PASSPHRASE}
    with ThreadPoolExecutor(2) as both:  # two administrators at once: one runbook
        answers = list(both.map(lambda _: first.call("POST", UPGRADE, json=body), range(2)))
    assert sorted(a.status_code for a in answers) == [202, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409).json()["error"]["message"]
    assert "being started already" in refused or "is running" in refused, refused
    assert first.call("POST", f"{UPGRADE}/stop").status_code == 200
    stopped = wait_for(first, ended)
    assert stopped["state"] == "stopped", stopped
    assert "Resume to go on" in stopped["message"] and steps(stopped)["install_here"] == "pending"
    assert first.call("POST", f"{UPGRADE}/resume").status_code == 202
    report = wait_for(first, ended)
    assert report["state"] == "done", str(report)
    assert set(steps(report).values()) == {"done"}, report
    order = [s["name"] for s in report["steps"]]
    assert order.index("install_here") < order.index("install_peer")
    assert version(first) == "1.2.0" and version(second) == "1.2.0"
    assert first.role() == "primary" and second.role() == "backup"
    details = {s["name"]: s["detail"] for s in report["steps"]}
    tested = []
    for verified in (details["verify_here"], details["verify_peer"]):
        assert "health ok at 1.2.0" in verified and "console: role: none" in verified, verified
        assert "consoles told 1.2.0" in verified and "fleet build 1.2.0" in verified, verified
        found = re.search(r"test session ([0-9a-f-]{36}): a Jump Client of this build", verified)
        assert found and "exit code 7 relayed" in verified, verified
        assert "the client uninstalled" in verified, verified
        tested.append(found.group(1))
    # each appliance's test session is in the site's reports, once, with its recording
    # (the backup's merged when the pair was established again); no test client is left
    assert first.call("POST", "/api/v1/failover/sync").status_code == 200
    for node in (first, second):
        listed = node.call("GET", "/api/v1/sessions", params={"limit": 100}).json()
        probes = {r["id"]: r for r in listed["sessions"] if r["id"] in tested}
        assert sorted(probes) == sorted(tested), listed
        for record in probes.values():
            assert record["username"] == "appliance:failover-upgrade", record
            assert record["joined_at"] and record["recording_sha256"], record
        assert node.call("GET", "/api/v1/jump-clients").json()["clients"] == []
    assert first.call("DELETE", UPGRADE).status_code == 204


def test_asynchronous_upgrade_goes_on_after_its_appliance_was_killed(
    server: named.NameServer, nodes: tuple[Node, Node]
) -> None:
    first, second = nodes
    assert first.call("POST", "/api/v1/failover/sync").status_code == 200
    start(first, "site 1.3.0", "async", PASSPHRASE)
    wait_for(first, lambda r: steps(r)["install_peer"] in ("running", "done", "failed"))
    first.appliance.stop(signal.SIGKILL)  # the appliance that runs the runbook, mid-way
    first.start_again()
    report = wait_for(first, ended)
    assert report["state"] == "done", report
    assert version(first) == "1.3.0" and version(second) == "1.3.0"
    assert second.role() == "primary" and first.role() == "backup"
    assert second.failover()["last_data_sync_status"] == "ok"  # synced as the last step
    swing = {s["name"]: s["detail"] for s in report["steps"]}["swing"]
    assert f"points here ({second.host})" in swing, swing
    assert resolve(server, SITE) == second.host
    order = [s["name"] for s in report["steps"]]
    assert order.index("install_peer") < order.index("swing") < order.index("install_here")
    shown = CliRunner().invoke(
        bastion_command, ["failover", "upgrade-status", "--data", str(first.appliance.data_dir)]
    )
    assert shown.exit_code == 0, shown.output
    assert "done  Move the site to the other appliance" in shown.output
    assert "Upgrade done after" in shown.output


@contextmanager
def admin_pages(node: Node) -> Iterator[httpx.Client]:
    with node.appliance.client(timeout=120) as client:
        sign_in(client, "admin", "password")
        change_password(client, "password", "a long and private phrase")
        yield client


def test_the_failover_page_shows_the_report_and_starts_through_the_preflight(
    nodes: tuple[Node, Node],
) -> None:
    first, second = nodes  # after the asynchronous upgrade: second is the primary
    with admin_pages(first) as page:
        shown = page.get(FAILOVER)
        assert 'id="upgrade-steps"' in shown.text and "<strong>done</strong>" in shown.text
        assert "Move the site to the other appliance" in shown.text
        forgotten = submit(page, FAILOVER, f"{FAILOVER}/upgrade/forget")
        assert 'id="notice"' in forgotten.text and 'id="upgrade-steps"' not in forgotten.text
        assert 'id="upgrade-form"' not in forgotten.text  # a backup does not start one
    with admin_pages(second) as page:
        assert 'id="upgrade-form"' in page.get(FAILOVER).text
        fields = {"releases": "site 1.3.0", "mode": "sync", "backup_passphrase": PASSPHRASE}
        mismatch = submit(page, FAILOVER, f"{FAILOVER}/upgrade", **fields, confirm_passphrase="x")
        assert 'id="form-error"' in mismatch.text and "site 1.3.0</textarea>" in mismatch.text
        same = submit(
            page, FAILOVER, f"{FAILOVER}/upgrade", **fields, confirm_passphrase=PASSPHRASE
        )
        said = re.search(r'id="form-error"[^>]*>(.*?)</', same.text, re.S)
        assert said, same.text
        assert "site 1.3.0 is installed" in said.group(1), said.group(1)
    assert second.call("GET", UPGRADE).status_code == 404


def test_a_base_only_release_upgrades_both_bases_and_leaves_the_site_version(
    nodes: tuple[Node, Node],
) -> None:
    first, second = nodes  # after the asynchronous upgrade: second is the primary
    assert [base_version(n) for n in nodes] == ["1.0.0", "1.0.0"]
    assert second.call("POST", "/api/v1/failover/sync").status_code == 200
    start(second, "base 1.1.0", "sync", PASSPHRASE)
    report = wait_for(second, ended)
    assert report["state"] == "done", report
    assert (report["from_base"], report["to_base"]) == ("1.0.0", "1.1.0"), report
    assert report["message"].startswith("Both appliances run 1.3.0 on base 1.1.0"), report
    details = {s["name"]: s["detail"] for s in report["steps"]}
    assert details["install_here"] == "base 1.1.0 installed", details
    assert details["install_peer"] == "base 1.1.0 installed", details
    assert [base_version(n) for n in nodes] == ["1.1.0", "1.1.0"]
    assert version(first) == "1.3.0" and version(second) == "1.3.0"
    assert second.role() == "primary" and first.role() == "backup"
    with second.appliance.client(timeout=120) as page:
        sign_in(page, "admin", "a long and private phrase")  # as the page test left it
        assert "sync upgrade to 1.3.0 on base 1.1.0 (base 1.1.0)" in page.get(FAILOVER).text
    assert second.call("DELETE", UPGRADE).status_code == 204


def base_version(node: Node) -> str:
    return SupervisorClient(node.appliance.data_dir).status().base_version
