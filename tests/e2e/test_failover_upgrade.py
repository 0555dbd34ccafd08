"""The upgrade of a failover pair as one operation, with two real appliances over real
TLS and releases of this project's own source published by a real update service: a
release that fails on the backup leaves the pair as it was; the synchronous mode
upgrades the primary first and keeps the roles; the asynchronous mode upgrades the
backup first and swaps them, and goes on after the appliance that runs it was killed
half way."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration._update_env import Vendor, service
from tests.integration.test_api import create_client
from tests.support.appliance import free_port, start_appliance
from tests.support.pair_node import Node
from tests.support.releases import project_wheel

SITE = "site.upgrade.test"
KEY = "the upgraded pair's inter-appliance key"
PASSPHRASE = "a passphrase for the backup first"
SERVICE_HOST, HOSTS = "127.0.0.190", ("127.0.0.191", "127.0.0.192")
UPGRADE = "/api/v1/failover/upgrade"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    """A (primary) and B (backup), both told of the update service, which offers a site
    release that fails its health check (1.1.0), then 1.2.0 and 1.3.0."""
    tmp = tmp_path_factory.mktemp("pair-upgrade")
    vendor = Vendor.for_site(tmp / "vendor", SITE)
    wheels = tmp / "wheels"
    vendor.publish_wheel(
        "site", "1.1.0", project_wheel("1.1.0", wheels, broken_health=True), "--site", SITE
    )
    for version in ("1.2.0", "1.3.0"):
        vendor.publish_wheel("site", version, project_wheel(version, wheels), "--site", SITE)
    root_file = tmp / "root.json"
    root_file.write_bytes(vendor.trusted_root())
    with service(vendor, SERVICE_HOST) as running, ExitStack() as stack:
        env = {
            **running.env(),
            "BASTION_UPDATE_SITE": SITE,
            "BASTION_UPDATE_TRUSTED_ROOT": str(root_file),
            "BASTION_INSTALL_PROBATION_SECONDS": "2",
            "BASTION_GATEWAY_LISTEN": "off",
            "BASTION_FAILOVER_FIRST_SYNC_SECONDS": "3600",
        }
        made = []
        for host in HOSTS:
            appliance = stack.enter_context(
                start_appliance(
                    tmp,
                    host=host,
                    port=free_port(host),
                    data_dir=tmp / f"data-{host}",
                    env=env,
                    extra_args=["--hostname", SITE],
                )
            )
            vendor.enrol(SITE, appliance.data_dir)
            made.append(Node(appliance, create_client(appliance, "upgrade"), stack, SITE))
        first, second = made
        for node, other in ((first, second), (second, first)):
            # after a restart the backup serves the site certificate its sync brought (the
            # primary's, issued by the primary's CA for the site name)
            node.appliance.trust = [other.appliance.ca_file]
            node.appliance.verify_hostname = False
        for node in made:
            assert node.call("PUT", "/api/v1/failover/key", json={"key": KEY}).status_code == 204
        body = {
            "backup_host": second.host,
            "backup_port": second.appliance.port,
            "reverse_host": first.host,
            "reverse_port": first.appliance.port,
        }
        answer = first.call("POST", "/api/v1/failover/establish", json=body)
        assert answer.status_code == 200, answer.text
        assert first.call("POST", "/api/v1/failover/sync").status_code == 200
        second.credentials = first.credentials  # the backup now holds the primary's clients
        yield first, second


def version(node: Node) -> str:
    with node.appliance.client() as client:
        return str(client.get("/check_health").json()["version"])


def runbook(node: Node) -> dict[str, Any]:
    answer = node.call("GET", UPGRADE)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait_for(node: Node, done: Any, timeout: float = 300) -> dict[str, Any]:
    """The runbook once `done(it)`; the appliance may be restarting meanwhile."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = runbook(node)
        except (httpx.HTTPError, AssertionError):
            time.sleep(0.5)
            continue
        if done(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"the runbook did not get there in {timeout} s: {last}")


def ended(report: dict[str, Any]) -> bool:
    return report["state"] != "running"


def steps(report: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["state"] for s in report["steps"]}


def start(node: Node, release: str, mode: str) -> dict[str, Any]:
    body = {"releases": [release], "mode": mode, "backup_passphrase": PASSPHRASE}
    answer = node.call("POST", UPGRADE, json=body)
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


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
    started = start(first, "site 1.1.0", "async")
    assert steps(started)["preflight"] == "done" and steps(started)["backup"] == "done"
    assert Path(started["backup_file"]).is_file()
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
    start(first, "site 1.2.0", "sync")
    report = wait_for(first, ended)
    assert report["state"] == "done", report
    assert set(steps(report).values()) == {"done"}, report
    order = [s["name"] for s in report["steps"]]
    assert order.index("install_here") < order.index("install_peer")
    assert version(first) == "1.2.0" and version(second) == "1.2.0"
    assert first.role() == "primary" and second.role() == "backup"
    verified = {s["name"]: s["detail"] for s in report["steps"]}["verify_here"]
    assert "health ok at 1.2.0" in verified and "console: role: none" in verified, verified
    assert first.call("DELETE", UPGRADE).status_code == 204


def test_asynchronous_upgrade_goes_on_after_its_appliance_was_killed(
    nodes: tuple[Node, Node],
) -> None:
    first, second = nodes
    assert first.call("POST", "/api/v1/failover/sync").status_code == 200
    start(first, "site 1.3.0", "async")
    wait_for(first, lambda r: steps(r)["install_peer"] in ("running", "done", "failed"))
    first.appliance.stop(signal.SIGKILL)  # the appliance that runs the runbook, mid-way
    first.start_again()
    report = wait_for(first, ended)
    assert report["state"] == "done", report
    assert version(first) == "1.3.0" and version(second) == "1.3.0"
    assert second.role() == "primary" and first.role() == "backup"
    order = [s["name"] for s in report["steps"]]
    assert order.index("install_peer") < order.index("swing") < order.index("install_here")
