"""The Jump Client fleet follows a role swap. Two real appliances with their gateways,
a real Jump Client process installed from the primary, reaching the site's gateway
address through a NAT rule (a TCP forwarder the test points at one appliance or the
other). The rule is changed and the primary steps down: its gateway sends the client
away at its reconnect offset (a NAT keeps an open connection where it was, so without
that the client would stay on the backup), and the client comes back through the rule
to the new primary, which serves the site certificate the client trusts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.test_api import create_client
from tests.support.appliance import free_port, start_appliance
from tests.support.endpoints import eventually, install_and_run
from tests.support.nat import Forwarder, forwarding
from tests.support.pair_node import Node, pair_up

SITE = "site.fleet-swap.test"
KEY = "the fleet's pair key"
HOSTS, NAT = ("127.0.0.184", "127.0.0.185"), "127.0.0.186"


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Node, Node, Forwarder, dict[str, tuple[str, int]]]]:
    tmp = tmp_path_factory.mktemp("fleet-swap")
    gateways = {host: (host, free_port(host)) for host in HOSTS}
    with forwarding((NAT, 0), gateways[HOSTS[0]]) as nat, ExitStack() as stack:
        nodes = []
        for host in HOSTS:
            web = free_port(host)
            env = {
                "BASTION_GATEWAY_LISTEN": "{}:{}".format(*gateways[host]),
                "BASTION_GATEWAY_ADDRESS": "{}:{}".format(*nat.address),  # installers carry it
                "BASTION_PUBLIC_URL": f"https://{host}:{web}",  # where an endpoint registers
            }
            appliance = stack.enter_context(
                start_appliance(tmp, host=host, port=web, env=env, extra_args=["--hostname", SITE])
            )
            nodes.append(Node(appliance, create_client(appliance, "fleet"), stack, SITE))
        first, second = nodes
        pair_up(first, second, KEY)
        yield first, second, nat, gateways


def clients(node: Node) -> list[dict[str, object]]:
    answer = node.call("GET", "/api/v1/jump-clients")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["clients"])


def aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def online(node: Node) -> bool:
    return any(c["status"] == "online" for c in clients(node))


def test_a_role_swap_sends_the_fleet_to_the_new_primary(
    pair: tuple[Node, Node, Forwarder, dict[str, tuple[str, int]]], tmp_path: Path
) -> None:
    first, second, nat, gateways = pair
    made = first.call("POST", "/api/v1/jump-clients/installers", json={"mode": "active"})
    assert made.status_code == 201, made.text
    installer = tmp_path / "installer.json"
    installer.write_text(made.json()["installer"])
    client = install_and_run(installer, tmp_path / "endpoint", tmp_path / "endpoint.log")
    try:
        eventually(lambda: online(first), what="the client online on the primary")
        old, new = gateways[first.host], gateways[second.host]
        assert nat.open[old] == 1 and nat.opened[new] == 0
        assert first.call("POST", "/api/v1/failover/sync").status_code == 200  # its identity

        nat.point_at(new)  # the NAT swing: new connections go to the other appliance
        swapped_at = datetime.now(UTC)
        answer = first.call("POST", "/api/v1/failover/become-backup", json={})
        assert answer.status_code == 200, answer.text
        assert second.role() == "primary" and first.role() == "backup"

        eventually(lambda: nat.open[old] == 0, timeout=20, what="the old primary let go")
        eventually(lambda: nat.open[new] == 1, timeout=30, what="the client at the new one")

        def checked_in_there() -> bool:
            (seen,) = clients(second)
            at = seen["last_check_in_at"]
            return seen["status"] == "online" and bool(at) and aware(str(at)) > swapped_at

        eventually(checked_in_there, timeout=20, what="its check-in on the new primary")
        assert nat.open[new] == 1, (nat.opened, nat.open)
    finally:
        client.stop()
