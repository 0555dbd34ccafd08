"""Two real appliances on their own loopback addresses, over real TLS: establishing a
failover pair from the intended primary, and each refusal naming what failed (one of
them: something in between that ends TLS, which the key's proof is bound against)."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.support.appliance import free_port, start_appliance, test_environment
from tests.support.sessions import Site, session_site
from tests.support.tls_relay import TlsRelay

SITE = "site.failover.test"
KEY = "a shared inter-appliance key"
UNUSED_HOST = "127.0.0.241"
"""An address no other test file listens on (the suite runs two test processes at once), so
a port found free on it stays closed while this test uses it."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Site]]:
    tmp = tmp_path_factory.mktemp("failover")
    with (
        session_site(tmp, "127.0.0.41", SITE) as primary,
        session_site(tmp, "127.0.0.42", SITE) as backup,
    ):
        yield primary, backup


def set_key(site: Site, key: str) -> None:
    answer = site.api.put("/api/v1/failover/key", json={"key": key})
    assert answer.status_code == 204, answer.text


def establish(primary: Site, backup: Site, **fields: object) -> tuple[int, dict[str, object]]:
    body = {
        "backup_host": backup.appliance.host,
        "backup_port": backup.appliance.port,
        "reverse_host": primary.appliance.host,
        "reverse_port": primary.appliance.port,
        **fields,
    }
    answer = primary.api.post("/api/v1/failover/establish", json=body)
    return answer.status_code, answer.json()


def message(body: dict[str, object]) -> str:
    error = body["error"]
    assert isinstance(error, dict)
    return str(error["message"])


def health(site: Site) -> dict[str, object]:
    with site.appliance.client() as client:
        return dict(client.get("/check_health").json())


def test_establishing_is_refused_with_what_failed_then_succeeds(pair: tuple[Site, Site]) -> None:
    primary, backup = pair
    status, body = establish(primary, backup)
    assert status == 409 and "no inter-appliance key" in message(body)

    set_key(primary, KEY)
    set_key(backup, "another key, not the same")
    status, body = establish(primary, backup)
    assert status == 409 and "keys of the two appliances differ" in message(body)

    set_key(backup, KEY)
    backup_address = (backup.appliance.host, backup.appliance.port)
    with TlsRelay(UNUSED_HOST, backup_address).running() as relay:
        status, body = establish(primary, backup, backup_host=relay.host, backup_port=relay.port)
    assert relay.relayed >= 1
    assert status == 409, body
    assert "something between the two appliances ends TLS" in message(body)
    assert relay.fingerprint[:16] in message(body)
    assert health(backup)["failover_role"] == "none"

    status, body = establish(primary, backup, backup_host=SITE)
    assert status == 400 and "shared site hostname" in message(body)
    status, body = establish(primary, backup, reverse_host=SITE.upper())
    assert status == 400 and "shared site hostname" in message(body)

    closed = free_port(UNUSED_HOST)
    status, body = establish(primary, backup, backup_host=UNUSED_HOST, backup_port=closed)
    assert status == 409 and "cannot be reached" in message(body)

    closed_back = free_port(primary.appliance.host)
    status, body = establish(primary, backup, reverse_port=closed_back)
    assert status == 409 and "could not reach the primary back" in message(body)
    assert health(backup)["failover_role"] == "none"
    assert health(primary)["failover_role"] == "none"

    status, body = establish(primary, backup)
    assert status == 200, body
    assert body["failover_role"] == "primary"
    peer = body["peer"]
    assert isinstance(peer, dict) and len(str(peer["fingerprint"])) == 64
    primary_health, backup_health = health(primary), health(backup)
    assert primary_health["failover_role"] == "primary"
    assert backup_health["failover_role"] == "backup"
    assert backup_health["enabled_shared_ips"] == []
    on_backup = backup.api.get("/api/v1/failover").json()
    assert on_backup["peer"]["host"] == primary.appliance.host
    assert (backup.appliance.data_dir / "state" / "failover.json").exists()

    status, body = establish(backup, primary)
    assert status == 409 and "is the backup of a pair" in message(body)


def test_peer_requests_without_a_valid_proof_are_refused(pair: tuple[Site, Site]) -> None:
    primary, _ = pair
    with primary.appliance.client() as client:
        prefix = "/api/v1/failover/peer"
        assert client.post(f"{prefix}/join", json={"host": "x", "port": 1}).status_code == 403
        forged = {"X-Bastion-Peer-Ticket": "1.2.3"}
        answer = client.post(f"{prefix}/join", json={"host": "x", "port": 1}, headers=forged)
        assert answer.status_code == 403
        challenge = client.post(f"{prefix}/challenge", json={}).json()["challenge"]
        wrong = {"challenge": challenge, "nonce": "n", "proof": "0" * 64}
        unbound = client.post(f"{prefix}/prove", json=wrong)
        assert unbound.status_code == 403 and "without binding it" in unbound.text
        bound = {**wrong, "binding": "certificate-sha256", "certificate": "0" * 64}
        answer = client.post(f"{prefix}/prove", json=bound)
        assert answer.status_code == 403 and "keys of the two appliances differ" in answer.text
        assert "ticket" not in answer.json()
        odd = {**bound, "certificate": "a\nforged log line"}
        assert client.post(f"{prefix}/prove", json=odd).status_code == 422
        huge = {"challenge": "x" * 100_000, "nonce": "n", "proof": "p"}
        assert client.post(f"{prefix}/prove", json=huge).status_code in (400, 422)
        assert client.post(f"{prefix}/prove", content=b"\xff").status_code in (400, 422)


def test_an_appliance_is_refused_as_its_own_backup(pair: tuple[Site, Site]) -> None:
    primary, backup = pair
    established(primary, backup)
    status, body = establish(primary, primary)
    assert status == 409 and "is this appliance itself" in message(body)
    assert health(primary)["failover_role"] == "primary"


def test_the_key_is_checked_and_stored_sealed(pair: tuple[Site, Site]) -> None:
    primary, _ = pair
    answer = primary.api.put("/api/v1/failover/key", json={"key": "short"})
    assert answer.status_code in (400, 422)
    sealed = Path(primary.appliance.data_dir / "state" / "inter-appliance-key.sealed")
    assert KEY.encode() not in sealed.read_bytes()


def established(primary: Site, backup: Site) -> None:
    """The pair as the first test leaves it, whichever test runs first."""
    if health(primary)["failover_role"] != "primary":
        set_key(primary, KEY)
        set_key(backup, KEY)
        status, body = establish(primary, backup)
        assert status == 200, body


def rows(site: Site, query: str) -> list[object]:
    database = site.appliance.data_dir / "db" / "bastion.sqlite"
    with closing(sqlite3.connect(database)) as connection:
        return sorted(r[0] for r in connection.execute(query))


def usernames(site: Site) -> list[str]:
    return [str(name) for name in rows(site, "SELECT username FROM accounts")]


def add_blob(site: Site, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    store = site.appliance.data_dir / "blobs" / "sha256"
    store.mkdir(parents=True, exist_ok=True)
    (store / sha).write_bytes(data)
    return sha


def blob_of(site: Site, sha: str) -> Path:
    return site.appliance.data_dir / "blobs" / "sha256" / sha


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def add_account(site: Site, username: str) -> int:
    made = site.api.post(
        "/api/v1/accounts",
        json={"username": username, "password": "a long pass phrase 9", "role": "representative"},
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def sync_on_console(site: Site) -> subprocess.CompletedProcess[str]:
    """`bastion failover sync` at the appliance's console: Sync Now, waiting for the end."""
    command = [sys.executable, "-m", "bastion", "failover", "sync"]
    return subprocess.run(
        [*command, "--data", str(site.appliance.data_dir)],
        env=test_environment({"COLUMNS": "300"}),
        capture_output=True,
        text=True,
        timeout=600,
    )


def sync_now(site: Site) -> tuple[int, dict[str, object]]:
    answer = site.api.post("/api/v1/failover/sync", timeout=300)
    return answer.status_code, answer.json()


def test_sync_now_brings_changes_and_blobs_to_the_backup(pair: tuple[Site, Site]) -> None:
    primary, backup = pair
    established(primary, backup)
    account = add_account(primary, "synced-one")
    sha = add_blob(primary, os.urandom(300_000))

    status, body = sync_now(primary)  # from the primary: the backup pulls, then answers
    assert status == 200, body
    assert body["last_data_sync_status"] == "ok"
    assert "synced-one" in usernames(backup)
    assert usernames(backup) == usernames(primary)
    assert blob_of(backup, sha).read_bytes() == blob_of(primary, sha).read_bytes()
    backup_health = health(backup)
    assert backup_health["last_data_sync_status"] == "ok"
    assert backup_health["last_data_sync_time"]

    disabled = primary.api.patch(f"/api/v1/accounts/{account}", json={"disabled": True})
    assert disabled.status_code == 200, disabled.text
    for groups in (["Servers", "Desks"], ["Desks"]):  # rows added, then one removed
        granted = primary.api.put(
            f"/api/v1/accounts/{account}/jump-groups", json={"jump_groups": groups}
        )
        assert granted.status_code == 200, granted.text
        status, body = sync_now(primary)
        assert status == 200, body
        assert rows(backup, "SELECT jump_group FROM account_jump_groups") == sorted(groups)
    assert rows(backup, f"SELECT disabled FROM accounts WHERE id = {account}") == [1]
    assert usernames(backup) == usernames(primary)


def test_a_sync_cut_mid_blob_resumes_and_leaves_nothing_half_applied(
    pair: tuple[Site, Site],
) -> None:
    primary, backup = pair
    established(primary, backup)
    add_account(primary, "before-cut")
    big = add_blob(primary, os.urandom(256 * 1024 * 1024))
    part = backup.appliance.data_dir / "blobs" / "failover-partial" / f"{big}.part"
    answers: list[subprocess.CompletedProcess[str]] = []
    pulling = threading.Thread(target=lambda: answers.append(sync_on_console(backup)))
    pulling.start()
    deadline = time.monotonic() + 120
    while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.005)
    for pid in children(primary.appliance.process.pid):  # the worker serving the transfer
        os.kill(pid, signal.SIGKILL)
    primary.appliance.stop(signal.SIGKILL)
    pulling.join(120)
    assert answers[0].returncode == 2
    assert "sync did not finish" in " ".join(answers[0].stdout.split()), answers[0].stdout
    assert health(backup)["last_data_sync_status"].startswith("failed")  # type: ignore[union-attr]
    assert not blob_of(backup, big).exists()
    cut_at = part.stat().st_size
    assert 0 < cut_at < 256 * 1024 * 1024
    assert "before-cut" in usernames(backup)  # the rows' batch was whole before the blobs

    running = primary.appliance
    with start_appliance(
        running.data_dir.parent,
        host=running.host,
        port=running.port,
        data_dir=running.data_dir,
        env=running.env,
        extra_args=["--hostname", SITE],
    ):
        synced = sync_on_console(backup)
        assert synced.returncode == 0, synced.stdout + synced.stderr
    assert hashlib.sha256(blob_of(backup, big).read_bytes()).hexdigest() == big
    assert not part.exists()


def test_the_backup_makes_its_first_sync_by_itself_after_joining(tmp_path: Path) -> None:
    """R34 says about 60 s; the appliances here are told 1 s, the path is the same."""
    soon = {"BASTION_FAILOVER_FIRST_SYNC_SECONDS": "1"}
    with (
        session_site(tmp_path, "127.0.0.46", SITE, soon) as primary,
        session_site(tmp_path, "127.0.0.47", SITE, soon) as backup,
    ):
        add_account(primary, "before-joining")
        established(primary, backup)
        deadline = time.monotonic() + 60
        while health(backup)["last_data_sync_status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert health(backup)["last_data_sync_status"] == "ok"
        assert "before-joining" in usernames(backup)
