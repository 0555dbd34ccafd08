"""Two real appliances over real TLS swing the site's DNS name at a real named (Debian
bind9) as they swap roles: Become Primary on the backup points the name at it, Become
Backup on it points the name back; a client resolving the name through named every
10 ms sees the old primary's address only briefly (printed). The primary also puts the
name right again at its periodic check when it was changed behind its back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from bastion.failover import dns_swing
from tests.conftest import skip_or_fail
from tests.support import named
from tests.support.dns_swing import (
    SITE,
    Node,
    dns_pair,
    resolve,
    swap_while_polling,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[named.NameServer]:
    if not named.available():
        skip_or_fail("named (Debian bind9) is not installed")
    with named.name_server(tmp_path_factory.mktemp("named"), site="192.0.2.1") as running:
        yield running


@pytest.fixture(scope="module")
def nodes(
    server: named.NameServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Node, Node]]:
    with dns_pair(tmp_path_factory.mktemp("dns-pair"), server) as pair:
        yield pair


def eventually(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)


def test_the_name_follows_the_primary_role_both_ways(
    server: named.NameServer, nodes: tuple[Node, Node]
) -> None:
    first, second = nodes
    # the primary puts the name right at its periodic check; the backup leaves it alone
    eventually(lambda: resolve(server) == first.host)
    assert second.failover()["dns_swing"]["last_update_ok"] is None

    stale, _ = swap_while_polling(server, second, "become-primary", second, first)
    print(f"\nBecome Primary: the name named the old primary for {stale * 1000:.0f} ms more")
    assert resolve(server) == second.host
    status = second.failover()["dns_swing"]
    assert status["last_update_ok"] is True and status["ttl"] == 30
    assert status["name"] == SITE and status["address"] == second.host
    assert status["addresses"] == [second.host]

    back, _ = swap_while_polling(server, second, "become-backup", first, second)
    print(f"Become Backup: the name named the old primary for {back * 1000:.0f} ms more")
    assert resolve(server) == first.host
    assert stale < 2 and back < 2


def test_a_name_changed_behind_the_primarys_back_is_put_right(
    server: named.NameServer, nodes: tuple[Node, Node]
) -> None:
    primary = next(node for node in nodes if node.failover()["failover_role"] == "primary")
    other = dns_swing.from_settings(
        server.address, server.zone, SITE, "192.0.2.99", server.key_file
    )
    assert other is not None
    dns_swing.point_here(other)
    assert resolve(server) == "192.0.2.99"
    eventually(lambda: resolve(server) == primary.host)


def test_a_forced_takeover_keeps_the_name_through_the_split_brain_and_its_fix(
    server: named.NameServer, nodes: tuple[Node, Node]
) -> None:
    old = next(node for node in nodes if node.failover()["failover_role"] == "primary")
    new = next(node for node in nodes if node is not old)
    eventually(lambda: resolve(server) == old.host)
    old.appliance.stop()
    answer = new.call(
        "POST", "/api/v1/failover/become-primary", json={"sync_first": False, "force": True}
    )
    assert answer.status_code == 200, answer.text
    assert resolve(server) == new.host

    old.start_again()  # still counting itself the primary: a split brain, found by both
    eventually(lambda: bool(old.failover()["split_brain"]) and bool(new.failover()["split_brain"]))
    time.sleep(2)  # several checks: neither primary takes the name back and forth
    assert resolve(server) == new.host

    answer = old.call("POST", "/api/v1/failover/fix-split-brain")  # the old one's data wins
    assert answer.status_code == 200, answer.text
    assert old.failover()["failover_role"] == "primary"
    eventually(lambda: resolve(server) == old.host)
