"""Two real appliances over real TLS swap roles: Become Primary and Become Backup with a
sync first, a forced takeover while the primary is down, the split brain both find once
it is back, and its fix. (Shared IP addresses moving with the role are tested in network
namespaces, in test_failover_shared_ip.py.)"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest

from tests.integration.test_api import create_client
from tests.support.appliance import free_port, start_appliance, test_environment
from tests.support.pair_node import Node, pair_up
from tests.support.shared_ip import fingerprint

SITE = "site.swap.test"
KEY = "the swap pair's inter-appliance key"
SERVED = ("127.0.0.178", free_port("127.0.0.178"))
"""The site's test address: it keeps answering, so the site counts as served."""
ENV = {
    "BASTION_GATEWAY_LISTEN": "off",
    "BASTION_FAILOVER_CHECK_SECONDS": "0.5",
    "BASTION_FAILOVER_FIRST_SYNC_SECONDS": "3600",
    "BASTION_FAILOVER_AUTO_TAKEOVER_SECONDS": "1",
    "BASTION_FAILOVER_TEST_ADDRESSES": f'["{SERVED[0]}:{SERVED[1]}"]',
}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    tmp = tmp_path_factory.mktemp("swap")
    hosts, made = ("127.0.0.173", "127.0.0.174"), []
    ports = [free_port(host) for host in hosts]
    # the site's public address leads to the first, as a NAT rule would
    env = {**ENV, "BASTION_PUBLIC_URL": f"https://{hosts[0]}:{ports[0]}"}
    with ExitStack() as stack, socket.create_server(SERVED):
        for host, port in zip(hosts, ports, strict=True):
            running = stack.enter_context(
                start_appliance(
                    tmp,
                    host=host,
                    port=port,
                    data_dir=tmp / f"data-{host}",
                    env=env,
                    extra_args=["--hostname", SITE],
                )
            )
            made.append(Node(running, create_client(running, "swap"), stack, SITE))
        first, second = made
        pair_up(first, second, KEY)
        yield first, second


def eventually(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)


def add_account(node: Node, username: str) -> None:
    made = node.call(
        "POST",
        "/api/v1/accounts",
        json={"username": username, "password": "a long pass phrase 9", "role": "representative"},
    )
    assert made.status_code == 201, made.text


def usernames(node: Node) -> set[str]:
    answer = node.call("GET", "/api/v1/accounts")
    assert answer.status_code == 200, answer.text
    return {str(item["username"]) for item in answer.json()}


def message(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["message"])


def test_roles_swap_both_ways_and_nothing_done_on_the_primary_is_lost(
    nodes: tuple[Node, Node],
) -> None:
    first, second = nodes
    add_account(first, "made-just-before-the-swap")

    answer = first.call("POST", "/api/v1/failover/become-primary", json={})
    assert answer.status_code == 409 and "already the primary" in message(answer)

    answer = second.call("POST", "/api/v1/failover/become-primary", json={"sync_first": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["failover_role"] == "primary" and answer.json()["role_since"]
    assert first.role() == "backup" and second.role() == "primary"
    assert "made-just-before-the-swap" in usernames(second)

    # the NAT rule still leads to the first appliance, now the backup: the check says so
    checked = second.call("POST", "/api/v1/failover/site-check").json()
    assert checked["reached"] and not checked["leads_to_primary"]
    assert checked["failover_role"] == "backup" and "NAT rule" in checked["message"]
    assert len(checked["certificate_sha256"]) == 64

    # the new backup reloads the new primary's data at its first sync
    add_account(second, "made-on-the-new-primary")
    assert second.call("POST", "/api/v1/failover/sync").status_code == 200
    assert "made-on-the-new-primary" in usernames(first)
    health = first.call("GET", "/check_health").json()
    assert health["last_data_sync_status"] == "ok"

    # and back, from the primary's side
    answer = second.call("POST", "/api/v1/failover/become-backup", json={"sync_first": True})
    assert answer.status_code == 200, answer.text
    assert first.role() == "primary" and second.role() == "backup"
    audit = first.call("GET", "/api/v1/audit", params={"action": "failover.promoted"})
    assert audit.status_code == 200 and audit.json()["total"] >= 1
    assert first.call("POST", "/api/v1/failover/site-check").json()["leads_to_primary"]
    command = [sys.executable, "-m", "bastion", "failover", "site-check", "--wait", "5"]
    on_console = subprocess.run(
        [*command, "--data", str(first.appliance.data_dir)],
        env=test_environment(first.appliance.env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert on_console.returncode == 0 and "leads to the primary" in on_console.stdout


def test_the_sync_interval_is_set_on_the_primary_only(nodes: tuple[Node, Node]) -> None:
    first, second = nodes
    primary, backup = (first, second) if first.role() == "primary" else (second, first)
    answer = primary.call("PUT", "/api/v1/failover/settings", json={"sync_interval_seconds": 59})
    assert answer.status_code == 422
    answer = primary.call("PUT", "/api/v1/failover/settings", json={"sync_interval_seconds": 900})
    assert answer.status_code == 200 and answer.json()["sync_interval_seconds"] == 900
    answer = backup.call("PUT", "/api/v1/failover/settings", json={"sync_interval_seconds": 120})
    assert answer.status_code == 409 and "set it on the primary" in message(answer)
    assert primary.call("POST", "/api/v1/failover/sync").status_code == 200
    settings = backup.call("GET", "/api/v1/failover/settings").json()
    assert settings["sync_interval_seconds"] == 900  # the site's setting, synced


def test_a_forced_takeover_then_the_split_brain_is_found_on_both_and_fixed(
    nodes: tuple[Node, Node],
) -> None:
    first, second = nodes
    if first.role() != "primary":
        assert first.call("POST", "/api/v1/failover/become-primary", json={}).status_code == 200
    first.appliance.stop()

    answer = second.call("POST", "/api/v1/failover/become-primary", json={"sync_first": True})
    assert answer.status_code == 409
    assert "Nothing changed" in message(answer) and second.role() == "backup"
    # automatic failover is on (1 s), but the site's test address answers: no takeover
    time.sleep(4)
    assert second.role() == "backup"
    peer_status = second.call("GET", "/api/v1/failover").json()["peer_status"]
    assert peer_status["status"] == "unreachable"

    answer = second.call(
        "POST", "/api/v1/failover/become-primary", json={"sync_first": True, "force": True}
    )
    assert answer.status_code == 200, answer.text
    assert second.role() == "primary"

    first.start_again()  # it comes back still counting itself the primary
    assert first.role() == "primary"

    def split_on(node: Node) -> bool:
        return bool(node.call("GET", "/api/v1/failover").json()["split_brain"])

    eventually(lambda: split_on(first) and split_on(second))
    status = second.call("GET", "/api/v1/failover").json()["peer_status"]
    assert status["status"] == "split brain" and "Both appliances are primary" in status["message"]
    assert next(entry["status"] for entry in status["history"]) == "split brain"

    answer = second.call("POST", "/api/v1/failover/fix-split-brain")
    assert answer.status_code == 200, answer.text
    assert second.role() == "primary" and first.role() == "backup"
    eventually(lambda: not split_on(first) and not split_on(second))

    answer = second.call("POST", "/api/v1/failover/fix-split-brain")
    assert answer.status_code == 409 and "no split brain" in message(answer)


def served_certificate(node: Node) -> str:
    with node.appliance.client() as client, client.stream("GET", "/check_health") as answer:
        return fingerprint(answer)


def test_a_primary_that_serves_the_synced_site_certificate_is_still_its_peer(
    nodes: tuple[Node, Node],
) -> None:
    first, second = nodes  # the split brain's fix left second the primary, first its backup
    assert second.role() == "primary" and first.role() == "backup"
    # from taking the role, and again once restarted, it serves the default certificate
    # of its site tables: the first's, which its first sync brought, not the one the
    # first pinned when the pair was made
    second.appliance.trust, second.appliance.verify_hostname = [first.appliance.ca_file], False
    site_certificate = served_certificate(first)
    assert served_certificate(second) == site_certificate
    second.appliance.stop()
    second.start_again()
    assert served_certificate(second) == site_certificate

    pulled = first.call("POST", "/api/v1/failover/sync")  # the backup pulls from it
    assert pulled.status_code == 200, pulled.text
    asked = second.call("POST", "/api/v1/failover/sync")  # and it asks the backup to
    assert asked.status_code == 200, asked.text

    def peer_ok(node: Node) -> bool:
        status = node.call("GET", "/api/v1/failover").json()["peer_status"]
        return status is not None and status["status"] == "ok"

    eventually(lambda: peer_ok(first) and peer_ok(second))
