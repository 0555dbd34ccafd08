"""A role swap moves the site's shared IP address: two real appliances in network
namespaces on one switch, and a client that keeps polling the shared address every
10 ms while the backup becomes the primary. The answers move from one appliance's
machine to the other's (the link-layer address the client sends to), none comes from
the old primary after that, and the longest gap stays short (`bench/bench_role_swap.py`
measures it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import skip_or_fail
from tests.support import netns
from tests.support.shared_ip import (
    AUTO_TAKEOVER_SECONDS,
    SHARED,
    Node,
    gone_while_polling,
    held,
    longest_gap,
    shared_ip_pair,
    swap_while_polling,
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node, netns.Host]]:
    why = netns.unavailable()
    if why:
        skip_or_fail(why)
    with shared_ip_pair(tmp_path_factory.mktemp("shared-ip")) as made:
        yield made


def test_the_shared_address_moves_with_the_primary_role(
    pair: tuple[Node, Node, netns.Host],
) -> None:
    primary, backup, client = pair
    assert held(primary, client) == [SHARED] and held(backup, client) == []

    answers, swapped = swap_while_polling(primary, backup, client)

    told = [(at, seen) for at, seen in answers if seen]  # whose machine is known
    assert told, "no answer could be told to come from either machine"
    machines = [seen for _, seen in told]
    old, new = machines[0], machines[-1]
    assert old != new, "the shared address did not move"
    first_new = machines.index(new)
    assert old not in machines[first_new:], "the old primary answered after the move"
    assert told[first_new][0] <= swapped + 1.0
    gap = longest_gap(answers)
    assert gap < 10.0, f"the shared address answered nothing for {gap:.2f} s"
    assert held(backup, client) == [SHARED] and held(primary, client) == []
    assert backup.call(client, "GET", "/check_health").json()["failover_role"] == "primary"


def test_the_backup_takes_over_by_itself_when_the_primarys_machine_is_gone(
    pair: tuple[Node, Node, netns.Host],
) -> None:
    first, second, client = pair  # the first test left `second` the primary
    primary, backup = (second, first) if held(second, client) else (first, second)

    answers, went = gone_while_polling(primary, backup, client)

    before = [seen for at, seen in answers if at < went and seen]
    after = [seen for at, seen in answers if at > went and seen]
    assert before and after and after[-1] != before[-1], "the shared address did not move"
    resumed = next(at for at, seen in answers if at > went and seen == after[-1])
    assert resumed - went >= AUTO_TAKEOVER_SECONDS  # not before the set time
    assert held(backup, client) == [SHARED]
    audit = backup.call(
        client, "GET", "/api/v1/audit", params={"action": "failover.automatic_takeover"}
    )
    assert audit.json()["total"] == 1
    print(f"site address answered again {resumed - went:.2f} s after the primary went")
