"""A failover pair that swings a DNS name: two real appliances on loopback, each given
the DNS swing's settings for a real named (tests/support/named.py), established and
synced; and a client that resolves the name through named every 10 ms, so that the time
the answer still pointed at the appliance that stepped down can be measured."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

from tests.integration.test_api import create_client
from tests.support.appliance import free_port, start_appliance
from tests.support.named import NameServer
from tests.support.pair_node import Node, pair_up

SITE = "site.swing.test"
KEY = "the DNS swing pair's inter-appliance key"
TTL = 30
POLL_SECONDS = 0.01


def dns_env(server: NameServer, own_address: str) -> dict[str, str]:
    return {
        "BASTION_GATEWAY_LISTEN": "off",
        "BASTION_FAILOVER_CHECK_SECONDS": "0.5",
        "BASTION_FAILOVER_FIRST_SYNC_SECONDS": "3600",
        "BASTION_FAILOVER_DNS_SERVER": server.address,
        "BASTION_FAILOVER_DNS_ZONE": server.zone,
        "BASTION_FAILOVER_DNS_NAME": SITE,
        "BASTION_FAILOVER_DNS_ADDRESS": own_address,
        "BASTION_FAILOVER_DNS_TSIG_KEY_FILE": str(server.key_file),
        "BASTION_FAILOVER_DNS_TTL": str(TTL),
    }


@contextmanager
def dns_pair(
    tmp: Path, server: NameServer, hosts: tuple[str, str] = ("127.0.0.175", "127.0.0.176")
) -> Iterator[tuple[Node, Node]]:
    """The first host the primary, the second its backup, established and synced."""
    with ExitStack() as stack:
        nodes = []
        for host in hosts:
            running = stack.enter_context(
                start_appliance(
                    tmp,
                    host=host,
                    port=free_port(host),
                    data_dir=tmp / f"data-{host}",
                    env=dns_env(server, host),
                    extra_args=["--hostname", SITE],
                )
            )
            nodes.append(Node(running, create_client(running, "dns-swing"), stack, SITE))
        first, second = nodes
        pair_up(first, second, KEY)
        yield first, second


def resolve(server: NameServer, name: str = SITE) -> str:
    """The A record's address as the server answers now ("" if none); nothing cached."""
    query = dns.message.make_query(name, "A")
    answer = dns.query.udp(query, server.host, port=server.port, timeout=1.0)
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.A:
            return ",".join(sorted(item.to_text() for item in rrset))
    return ""


class Poller:
    """Resolves the name every 10 ms in a thread: (wall-clock time, answer) pairs."""

    def __init__(self, server: NameServer) -> None:
        self.server = server
        self.answers: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dns poller", daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append((time.time(), resolve(self.server)))
            except Exception:  # a lost datagram counts as no answer
                self.answers.append((time.time(), "?"))
            self._stop.wait(POLL_SECONDS)


def stale_seconds(answers: list[tuple[float, str]], new: str, stepped_down_at: float) -> float:
    """How long after the old primary stepped down the answer still was not the new
    primary's address (to the first answer that was)."""
    for at, address in answers:
        if at >= stepped_down_at and address == new:
            return at - stepped_down_at
    raise AssertionError(f"the name never pointed at {new}: last answers {answers[-5:]}")


def swap_while_polling(
    server: NameServer, caller: Node, action: str, new_primary: Node, old_primary: Node
) -> tuple[float, list[tuple[float, str]]]:
    """`action` (become-primary, become-backup) on `caller` while the name is polled: how
    long the answer still pointed at the appliance that stepped down (from its
    `role_since`) before it named the new primary, and the answers."""
    with Poller(server) as poller:
        time.sleep(0.3)
        answer = caller.call("POST", f"/api/v1/failover/{action}", json={})
        assert answer.status_code == 200, answer.text
        time.sleep(0.5)
    stepped_down = datetime.fromisoformat(old_primary.failover()["role_since"]).timestamp()
    return stale_seconds(poller.answers, new_primary.host, stepped_down), poller.answers
