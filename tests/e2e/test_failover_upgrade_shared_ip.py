"""The asynchronous upgrade of a pair moves the site's shared IP address: two real
appliances in network namespaces on one switch, the update service on a third host,
and a client that polls the shared address every 10 ms through the whole runbook. The
address ends on the upgraded backup, which is the new primary, and the client is never
without an answer for long (`bench/bench_pair_upgrade.py` measures the runbook on
loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import skip_or_fail
from tests.support import netns
from tests.support.shared_ip import (
    SHARED,
    Node,
    held,
    longest_gap,
    upgradable_pair,
    upgrade_while_polling,
)

PASSPHRASE = "a passphrase for the backup first"
VERSION = "1.2.0"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node, netns.Host]]:
    why = netns.unavailable()
    if why:
        skip_or_fail(why)
    with upgradable_pair(tmp_path_factory.mktemp("upgrade-shared-ip"), [VERSION]) as made:
        yield made


def test_the_asynchronous_upgrade_moves_the_shared_address_to_the_upgraded_backup(
    pair: tuple[Node, Node, netns.Host],
) -> None:
    primary, backup, client = pair
    assert held(primary, client) == [SHARED] and held(backup, client) == []
    body = {"releases": [f"site {VERSION}"], "mode": "async", "backup_passphrase": PASSPHRASE}
    answers, last = upgrade_while_polling(primary, backup, client, body)
    assert last is not None and last["state"] == "done", last
    swing = next(s for s in last["steps"] if s["name"] == "swing")
    assert "holds the shared addresses " + SHARED in swing["detail"], swing
    assert held(backup, client) == [SHARED] and held(primary, client) == []
    roles = [n.call(client, "GET", "/check_health").json() for n in (backup, primary)]
    assert [r["failover_role"] for r in roles] == ["primary", "backup"]
    assert [r["version"] for r in roles] == [VERSION, VERSION]
    gap = longest_gap(answers)
    assert len(answers) > 100 and gap < 10.0, f"the site answered nothing for {gap:.2f} s"
