"""A failover pair whose appliances keep their data in PostgreSQL (each its own
database on a real server): established, synced through the change journal (a changed
account keeps its Jump Groups on the backup, a group taken away goes), a role swap, and
a new account on the new primary that comes back to the other appliance; then a break,
a session record made on each, and both on both once the pair is established again."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import psycopg
import pytest

from tests.integration.test_api import create_client
from tests.support.appliance import start_appliance
from tests.support.pair_node import Node, pair_up
from tests.support.postgres import PostgresServer, available_server

pytestmark = pytest.mark.postgres
SITE = "site.postgres-pair.test"
KEY = "the postgres pair's inter-appliance key"
HOSTS = ("127.0.0.96", "127.0.0.97")
PASSWORD = "a long pass phrase 1"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node, PostgresServer]]:
    tmp = tmp_path_factory.mktemp("postgres-pair")
    with available_server(host="127.0.0.98") as server, ExitStack() as stack:
        made = []
        for host in HOSTS:
            url = server.create_database(database(host))
            args = ["--hostname", SITE, "--database-url", url]
            env = {"BASTION_GATEWAY_LISTEN": "off", "BASTION_FAILOVER_FIRST_SYNC_SECONDS": "3600"}
            appliance = stack.enter_context(
                start_appliance(tmp, host=host, extra_args=args, env=env)
            )
            credentials = create_client(appliance, "pg", "--database-url", url)
            made.append(Node(appliance, credentials, stack, SITE))
        first, second = made
        yield first, second, server


def database(host: str) -> str:
    return "site_" + host.replace(".", "_")


def connect(server: PostgresServer, name: str) -> psycopg.Connection:
    return psycopg.connect(
        f"host={server.host} port={server.port} user={server.user} dbname={name}"
    )


def usernames(server: PostgresServer, node: Node) -> set[str]:
    with connect(server, database(node.host)) as connection:
        return {r[0] for r in connection.execute("SELECT username FROM accounts")}


def granted(server: PostgresServer, node: Node, account: int) -> list[str]:
    with connect(server, database(node.host)) as connection:
        query = "SELECT jump_group FROM account_jump_groups WHERE account_id = %s ORDER BY 1"
        return [r[0] for r in connection.execute(query, (account,))]


def names(server: PostgresServer, node: Node, account: int) -> str:
    with connect(server, database(node.host)) as connection:
        found = connection.execute("SELECT display_name FROM accounts WHERE id = %s", (account,))
        return str(found.fetchone()[0])  # type: ignore[index]


def sync(primary: Node) -> dict[str, object]:
    answer = primary.call("POST", "/api/v1/failover/sync")
    assert answer.status_code == 200, answer.text
    body = dict(answer.json())
    assert body["last_data_sync_status"] == "ok", body
    return body


def make_account(node: Node, username: str) -> int:
    body = {"username": username, "password": PASSWORD, "role": "representative"}
    answer = node.call("POST", "/api/v1/accounts", json=body)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def test_a_pair_on_postgresql_syncs_swaps_and_syncs_back(
    pair: tuple[Node, Node, PostgresServer],
) -> None:
    first, second, server = pair
    pair_up(first, second, KEY)  # its first sync: a snapshot

    kept = make_account(first, "kept-anne")
    other = make_account(first, "other")
    groups = f"/api/v1/accounts/{other}/jump-groups"
    answer = first.call("PUT", groups, json={"jump_groups": ["East", "West"]})
    assert answer.status_code == 200, answer.text
    sync(first)  # changes from the journal
    assert {"kept-anne", "other"} <= usernames(server, second)
    assert granted(server, second, other) == ["East", "West"]

    # a changed account keeps its Jump Groups on the backup (they hang on it, with
    # ON DELETE CASCADE); a group taken away goes
    answer = first.call("PATCH", f"/api/v1/accounts/{other}", json={"display_name": "Ötzi"})
    assert answer.status_code == 200, answer.text
    assert first.call("PUT", groups, json={"jump_groups": ["East"]}).status_code == 200
    sync(first)
    assert granted(server, second, other) == ["East"]
    assert names(server, second, other) == "Ötzi"

    answer = second.call("POST", "/api/v1/failover/become-primary", json={})
    assert answer.status_code == 200, answer.text
    assert second.role() == "primary" and first.role() == "backup"
    made = make_account(second, "made-on-the-new-primary")  # no id of the synced ones
    assert made > kept
    sync(second)
    assert "made-on-the-new-primary" in usernames(server, first)
    assert usernames(server, first) == usernames(server, second)


def record_session(server: PostgresServer, node: Node, recording: bytes) -> str:
    """An ended session's record and its recording in the blob store, as a session's end
    leaves them."""
    sha = hashlib.sha256(recording).hexdigest()
    store = node.appliance.data_dir / "blobs" / "sha256"
    store.mkdir(parents=True, exist_ok=True)
    (store / sha).write_bytes(recording)
    made = str(uuid.uuid4())
    with connect(server, database(node.host)) as connection:
        connection.execute(
            "INSERT INTO sessions (id, username, jump_client_name, jump_client_hostname, "
            "started_at, joined_at, ended_at, end_reason, bytes_from_console, "
            "bytes_from_endpoint, recording_sha256, recording_size, input_recorded) VALUES "
            "(%s, 'rep', 'web-1', 'web-1.example', now(), now(), now(), 'ended', 0, %s, %s, "
            "%s, false)",
            (made, len(recording), sha, len(recording)),
        )
    return made


def sessions(server: PostgresServer, node: Node) -> list[str]:
    with connect(server, database(node.host)) as connection:
        return sorted(r[0] for r in connection.execute("SELECT id FROM sessions"))


def test_sessions_made_on_each_while_broken_are_on_both_once_established_again(
    pair: tuple[Node, Node, PostgresServer],
) -> None:
    first, second, server = pair  # second is the primary since the swap
    answer = second.call("POST", "/api/v1/failover/break")
    assert answer.status_code == 200, answer.text
    made = [record_session(server, n, f"made on {n.host}\n".encode()) for n in (first, second)]
    pair_up(second, first, KEY)  # the merge takes the backup's, the sync brings the union
    for node in (first, second):
        assert sessions(server, node) == sorted(made)  # each once
        blobs = node.appliance.data_dir / "blobs" / "sha256"
        for other in (first, second):
            sha = hashlib.sha256(f"made on {other.host}\n".encode()).hexdigest()
            assert (blobs / sha).is_file(), (node.host, other.host)
    assert second.role() == "primary" and first.role() == "backup"
