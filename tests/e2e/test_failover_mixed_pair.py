"""A failover pair of one appliance on the embedded SQLite database and one on
PostgreSQL: the pair exchanges a snapshot file and rows, not database files, so each
keeps its own. SQLite primary to PostgreSQL backup (the first sync's snapshot, then the
journal: accounts, Jump Groups, a non-ASCII name), a role swap, and the PostgreSQL
primary's changes back to the SQLite backup."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.integration.test_api import create_client
from tests.support.appliance import start_appliance
from tests.support.pair_node import Node, pair_up
from tests.support.postgres import available_server

pytestmark = pytest.mark.postgres
SITE = "site.mixed-pair.test"
KEY = "the mixed pair's inter-appliance key"
HOSTS = ("127.0.0.233", "127.0.0.234")
PASSWORD = "a long pass phrase 1"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    tmp = tmp_path_factory.mktemp("mixed-pair")
    env = {"BASTION_GATEWAY_LISTEN": "off", "BASTION_FAILOVER_FIRST_SYNC_SECONDS": "3600"}
    with available_server(host="127.0.0.235") as server, ExitStack() as stack:
        on_sqlite = stack.enter_context(
            start_appliance(tmp, host=HOSTS[0], extra_args=["--hostname", SITE], env=env)
        )
        url = server.create_database("mixed")
        args = ["--hostname", SITE, "--database-url", url]
        on_postgres = stack.enter_context(
            start_appliance(tmp, host=HOSTS[1], extra_args=args, env=env)
        )
        console = create_client(on_postgres, "mixed", "--database-url", url)
        yield (
            Node(on_sqlite, create_client(on_sqlite, "mixed"), stack, SITE),
            Node(on_postgres, console, stack, SITE),
        )


def sync(primary: Node) -> None:
    answer = primary.call("POST", "/api/v1/failover/sync")
    assert answer.status_code == 200, answer.text
    assert answer.json()["last_data_sync_status"] == "ok", answer.text


def accounts(node: Node) -> dict[str, str]:
    answer = node.call("GET", "/api/v1/accounts")
    assert answer.status_code == 200, answer.text
    return {a["username"]: a["display_name"] for a in answer.json()}


def make_account(node: Node, username: str, display_name: str = "") -> int:
    body = {"username": username, "password": PASSWORD, "role": "representative"}
    answer = node.call("POST", "/api/v1/accounts", json={**body, "display_name": display_name})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def groups(node: Node, account: int) -> list[str]:
    answer = node.call("GET", f"/api/v1/accounts/{account}/jump-groups")
    assert answer.status_code == 200, answer.text
    return sorted(answer.json()["jump_groups"])


def test_a_sqlite_primary_and_a_postgresql_backup_sync_swap_and_sync_back(
    pair: tuple[Node, Node],
) -> None:
    on_sqlite, on_postgres = pair
    before = make_account(on_sqlite, "before-pairing", "Zoë")
    pair_up(on_sqlite, on_postgres, KEY)  # the first sync: SQLite's snapshot into PostgreSQL
    assert accounts(on_postgres)["before-pairing"] == "Zoë"

    other = make_account(on_sqlite, "other", "Ötzi")
    path = f"/api/v1/accounts/{other}/jump-groups"
    assert on_sqlite.call("PUT", path, json={"jump_groups": ["East", "West"]}).status_code == 200
    answer = on_sqlite.call("PATCH", f"/api/v1/accounts/{before}", json={"display_name": "Zoé"})
    assert answer.status_code == 200, answer.text
    sync(on_sqlite)  # the journal's rows
    assert accounts(on_postgres) == accounts(on_sqlite)
    assert accounts(on_postgres)["before-pairing"] == "Zoé"
    assert groups(on_postgres, other) == ["East", "West"]

    answer = on_postgres.call("POST", "/api/v1/failover/become-primary", json={})
    assert answer.status_code == 200, answer.text
    assert on_postgres.role() == "primary" and on_sqlite.role() == "backup"
    made = make_account(on_postgres, "made-on-postgresql", "Łucja")
    assert made > other  # its serial counter moved past the synced ids
    assert on_postgres.call("PUT", path, json={"jump_groups": ["East"]}).status_code == 200
    sync(on_postgres)
    assert accounts(on_sqlite) == accounts(on_postgres)
    assert accounts(on_sqlite)["made-on-postgresql"] == "Łucja"
    assert groups(on_sqlite, other) == ["East"]
