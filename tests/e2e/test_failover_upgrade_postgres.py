"""The pair's upgrade runbook on a pair whose appliances keep their data in PostgreSQL
(each its own database on a real server), with a Jump Client gateway on each: the
asynchronous mode end to end (the fresh backup, the installs and their migrations,
verify with its console and test session, the swing, establish again), and the
site's data on both afterwards."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.support.appliance import free_port
from tests.support.pair_node import Node
from tests.support.pair_upgrade import ended, start, upgrade_pair, wait_for
from tests.support.postgres import available_server

pytestmark = pytest.mark.postgres
HOSTS = ("127.0.0.86", "127.0.0.87")
PASSPHRASE = "a passphrase for the backup first"


def database(host: str) -> str:
    return "upgrade_" + host.replace(".", "_")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    tmp = tmp_path_factory.mktemp("pair-upgrade-postgres")
    with available_server(host="127.0.0.88") as server:

        def env(host: str) -> dict[str, str]:
            return {
                "BASTION_DATABASE_URL": server.create_database(database(host)),
                "BASTION_GATEWAY_LISTEN": f"{host}:{free_port(host)}",
            }

        with upgrade_pair(tmp, "127.0.0.85", HOSTS, ["1.2.0"], env_for=env) as made:
            yield made


def test_the_asynchronous_runbook_upgrades_a_postgresql_pair(pair: tuple[Node, Node]) -> None:
    first, second = pair
    made = first.call("POST", "/api/v1/accounts", json={
        "username": "before-upgrade", "password": "a long pass phrase 1",
        "role": "representative", "display_name": "Ünïcode",
    })  # fmt: skip
    assert made.status_code == 201, made.text
    assert first.call("POST", "/api/v1/failover/sync").status_code == 200
    start(first, "site 1.2.0", "async", PASSPHRASE)
    report = wait_for(first, ended)
    assert report["state"] == "done", str(report)
    details = {s["name"]: s["detail"] for s in report["steps"]}
    for verified in (details["verify_peer"], details["verify_here"]):
        assert "health ok at 1.2.0" in verified and "console: role: none" in verified, verified
        assert re.search(r"test session [0-9a-f-]{36}: .* the client uninstalled", verified)
    assert second.role() == "primary" and first.role() == "backup"
    for node in (first, second):
        with node.appliance.client() as client:
            assert client.get("/check_health").json()["version"] == "1.2.0"
        accounts = node.call("GET", "/api/v1/accounts").json()
        assert [a["display_name"] for a in accounts if a["username"] == "before-upgrade"] == [
            "Ünïcode"
        ]
    assert second.failover()["last_data_sync_status"] == "ok"
