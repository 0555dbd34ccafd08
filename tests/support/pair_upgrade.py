"""A failover pair whose appliances are told of a real update service offering site
releases of this project's own source: for the pair upgrade test and its benchmark."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.integration._update_env import Vendor, service
from tests.integration.test_api import create_client
from tests.support.appliance import free_port, start_appliance
from tests.support.pair_node import Node, pair_up
from tests.support.releases import project_wheel

SITE = "site.upgrade.test"
KEY = "the upgraded pair's inter-appliance key"
UPGRADE = "/api/v1/failover/upgrade"


@contextmanager
def upgrade_pair(
    tmp: Path,
    service_host: str,
    hosts: tuple[str, str],
    versions: Sequence[str],
    broken: Sequence[str] = (),
    env_for: Callable[[str], dict[str, str]] | None = None,
    bases: Sequence[str] = (),
    seed: Callable[[Path], None] | None = None,
) -> Iterator[tuple[Node, Node]]:
    """A (primary) and B (its synced backup); the service offers each of `versions` (and
    `broken`: releases whose health check fails) and base releases of `bases` (their
    payload the last site version's wheel); `env_for(host)`: more settings of the
    appliance on `host`; `seed(data_dir)`: fills A's data directory before its first
    start (the first sync brings it to B)."""
    vendor = Vendor.for_site(tmp / "vendor", SITE)
    wheels = tmp / "wheels"
    for version in broken:
        wheel = project_wheel(version, wheels, broken_health=True)
        vendor.publish_wheel("site", version, wheel, "--site", SITE)
    for version in versions:
        vendor.publish_wheel("site", version, project_wheel(version, wheels), "--site", SITE)
    for version in bases:
        vendor.publish_wheel("base", version, project_wheel(versions[-1], wheels))
    root_file = tmp / "root.json"
    root_file.write_bytes(vendor.trusted_root())
    with service(vendor, service_host) as running, ExitStack() as stack:
        env = {
            **running.env(),
            "BASTION_UPDATE_SITE": SITE,
            "BASTION_UPDATE_TRUSTED_ROOT": str(root_file),
            "BASTION_INSTALL_PROBATION_SECONDS": "2",
            "BASTION_GATEWAY_LISTEN": "off",
            "BASTION_FAILOVER_FIRST_SYNC_SECONDS": "3600",
        }
        made = []
        if seed is not None:
            seed(tmp / f"data-{hosts[0]}")
        for host in hosts:
            own = {**env, **(env_for(host) if env_for else {})}
            appliance = stack.enter_context(
                start_appliance(
                    tmp,
                    host=host,
                    port=free_port(host),
                    data_dir=tmp / f"data-{host}",
                    env=own,
                    extra_args=["--hostname", SITE],
                )
            )
            database = own.get("BASTION_DATABASE_URL")
            vendor.enrol(
                SITE, appliance.data_dir, {"BASTION_DATABASE_URL": database} if database else None
            )
            console = ["--database-url", database] if database else []
            credentials = create_client(appliance, "upgrade", *console)
            made.append(Node(appliance, credentials, stack, SITE))
        first, second = made
        pair_up(first, second, KEY)
        yield first, second


def runbook(node: Node) -> dict[str, Any]:
    answer = node.call("GET", UPGRADE)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait_for(
    node: Node, done: Callable[[dict[str, Any]], bool], timeout: float = 300
) -> dict[str, Any]:
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


def start(node: Node, release: str, mode: str, passphrase: str) -> dict[str, Any]:
    body = {"releases": [release], "mode": mode, "backup_passphrase": passphrase}
    answer = node.call("POST", UPGRADE, json=body)
    assert answer.status_code == 202, answer.text
    return dict(answer.json())
