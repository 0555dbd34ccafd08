"""Merging (R32), two real appliances over real TLS: sessions run for real (a Jump
Client process, the access console jumping to it) on each appliance while it stands
alone are, once the pair is established and synced, on both, with their recordings,
each once; and so again after a break and a new establishing. A recording damaged on
the backup, or a session still in progress there, refuses the establishing and leaves
the primary as it was.

Each appliance here has its own internal CA; after its first sync the backup holds the
primary's certificates but serves its own, so no Jump Client can be installed on it
from then on. Its session made while the pair is broken is therefore written into its
database as the sessions code writes an ended one (a copy of a real record under a new
id, with a recording of its own).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.failover.peer import TICKET_HEADER, PeerClient
from bastion.failover.rules import PeerAddress, PeerRefusedError
from tests.integration.test_api import bearer, create_client, get_token
from tests.support.endpoints import eventually
from tests.support.sessions import (
    Site,
    clients,
    console,
    online_endpoint,
    representative,
    session_site,
    signed_in_console,
)

SITE = "site.merge.test"
KEY = "a shared inter-appliance key for merging"
PRIMARY_HOST, BACKUP_HOST = "127.0.0.171", "127.0.0.172"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Site]]:
    tmp = tmp_path_factory.mktemp("merge")
    (tmp / "primary").mkdir()
    (tmp / "backup").mkdir()
    with (
        session_site(tmp / "primary", PRIMARY_HOST, SITE) as primary,
        session_site(tmp / "backup", BACKUP_HOST, SITE) as backup,
    ):
        for site in (primary, backup):
            assert site.api.put("/api/v1/failover/key", json={"key": KEY}).status_code == 204
        yield primary, backup


@contextmanager
def fresh_api(site: Site, name: str) -> Iterator[Site]:
    """The site with an API client made now: after a sync, the backup's API clients are
    the primary's, so a token it issued before no longer holds."""
    token = get_token(site.appliance, create_client(site.appliance, name)).json()
    with site.appliance.client(headers=bearer(token["access_token"]), timeout=60) as api:
        yield Site(site.appliance, api, site.tmp)


def establish(primary: Site, backup: Site) -> httpx.Response:
    body = {
        "backup_host": backup.appliance.host,
        "backup_port": backup.appliance.port,
        "reverse_host": primary.appliance.host,
        "reverse_port": primary.appliance.port,
    }
    return primary.api.post("/api/v1/failover/establish", json=body, timeout=300)


def role(site: Site) -> str:
    with site.appliance.client() as client:
        return str(client.get("/check_health").json()["failover_role"])


def ended(site: Site) -> list[dict[str, Any]]:
    found = site.api.get("/api/v1/sessions", params={"limit": 500}).json()["sessions"]
    return [s for s in found if not s["live"]]


def new_session(site: Site, home: Path, text: str) -> str:
    """A session run to its end by the access console on an online Jump Client."""
    before = {s["id"] for s in ended(site) if s["recording_sha256"]}
    online = [c for c in clients(site) if c["status"] == "online"]
    done = console(home, "jump", str(online[0]["id"]), stdin=f"echo {text}\nexit 0\n")
    assert done.returncode == 0, done.stdout + done.stderr

    def made() -> set[str]:
        return {s["id"] for s in ended(site) if s["recording_sha256"]} - before

    eventually(lambda: len(made()) == 1, timeout=30, what="the record")
    return made().pop()


def recordings(site: Site) -> dict[str, str]:
    """Each ended session's id and the SHA-256 of its recording as downloaded."""
    found = {}
    for record in ended(site):
        answer = site.api.get(f"/api/v1/sessions/{record['id']}/recording")
        assert answer.status_code == 200, answer.text
        found[record["id"]] = hashlib.sha256(answer.content).hexdigest()
        assert found[record["id"]] == record["recording_sha256"]
    return found


def database(site: Site) -> Path:
    return site.appliance.data_dir / "db" / "bastion.sqlite"


def merge_audits(site: Site) -> list[dict[str, Any]]:
    query = "SELECT details FROM audit_log WHERE action = 'failover.merge' ORDER BY id"
    with closing(sqlite3.connect(database(site))) as connection:
        return [json.loads(row[0]) for row in connection.execute(query)]


def record_while_broken(site: Site, like: str, recording: bytes, ended: bool = True) -> str:
    """An ended session record (a copy of `like` under a new id) and its recording in the
    blob store, as a session's end leaves them; `ended` False: one still in progress."""
    sha = hashlib.sha256(recording).hexdigest()
    store = site.appliance.data_dir / "blobs" / "sha256"
    (store / sha).write_bytes(recording)
    made = str(uuid.uuid4())
    with closing(sqlite3.connect(database(site))) as connection, connection:
        connection.row_factory = sqlite3.Row
        row = dict(connection.execute("SELECT * FROM sessions WHERE id = ?", (like,)).fetchone())
        row.update(id=made, recording_sha256=sha, recording_size=len(recording))
        if not ended:
            row.update(ended_at=None, recording_sha256=None, recording_size=None)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        connection.execute(f"INSERT INTO sessions ({names}) VALUES ({marks})", list(row.values()))
    return made


def test_sessions_made_alone_are_on_both_after_establishing_and_again_after_a_break(
    pair: tuple[Site, Site],
) -> None:
    primary, backup = pair
    with online_endpoint(primary), online_endpoint(backup):
        representative(primary, "rep-primary", ["Servers"])
        representative(backup, "rep-backup", ["Servers"])
        on_primary = signed_in_console(primary, "rep-primary")
        made_on_primary = new_session(primary, on_primary, "primary-alone")
        made_on_backup = new_session(backup, signed_in_console(backup, "rep-backup"), "backup")

        answer = establish(primary, backup)
        assert answer.status_code == 200, answer.text
        assert answer.json()["merged"] == {"merged": 1, "already_present": 0, "blobs_fetched": 1}
        assert merge_audits(primary)[-1] == answer.json()["merged"]
        synced = primary.api.post("/api/v1/failover/sync", timeout=300)
        assert synced.status_code == 200 and synced.json()["last_data_sync_status"] == "ok"
        union = {made_on_primary, made_on_backup}
        with fresh_api(backup, "after-merge") as reader:
            for site in (primary, reader):
                assert sorted(s["id"] for s in ended(site)) == sorted(union)  # each once
            assert recordings(primary) == recordings(reader)
            merged = reader.api.get(f"/api/v1/sessions/{made_on_backup}").json()
            kept = reader.api.get(f"/api/v1/sessions/{made_on_primary}").json()
        assert merged["username"] == "rep-backup"
        assert merged["account_id"] is None  # an id the backup gave: not this site's rep-backup
        assert kept["account_id"] is not None

        assert primary.api.post("/api/v1/failover/break").json()["peer_told"] is True
        union.add(new_session(primary, on_primary, "primary-while-broken"))
    union.add(record_while_broken(backup, made_on_backup, b"backup while broken\n"))

    answer = establish(primary, backup)
    assert answer.status_code == 200, answer.text
    assert answer.json()["merged"] == {"merged": 1, "already_present": 2, "blobs_fetched": 1}
    synced = primary.api.post("/api/v1/failover/sync", timeout=300)
    assert synced.status_code == 200 and synced.json()["last_data_sync_status"] == "ok"
    with fresh_api(backup, "after-second-merge") as reader:
        for site in (primary, reader):
            assert sorted(s["id"] for s in ended(site)) == sorted(union)
        assert recordings(primary) == recordings(reader)
    assert role(primary) == "primary" and role(backup) == "backup"


def test_a_damaged_recording_or_a_session_in_progress_refuses_establishing(
    pair: tuple[Site, Site],
) -> None:
    primary, backup = pair
    if role(primary) != "primary":  # the pair as the test above leaves it
        assert establish(primary, backup).status_code == 200
    assert primary.api.post("/api/v1/failover/break").status_code == 200
    like = ended(primary)[0]["id"]
    before = sorted(s["id"] for s in ended(primary))
    audits = len(merge_audits(primary))

    damaged = record_while_broken(backup, like, b"to be damaged\n")
    sha = hashlib.sha256(b"to be damaged\n").hexdigest()
    (backup.appliance.data_dir / "blobs" / "sha256" / sha).write_bytes(b"to be damageX\n")
    answer = establish(primary, backup)
    assert answer.status_code == 409, answer.text
    message = answer.json()["error"]["message"]
    assert "does not match its SHA-256" in message and "nothing was merged" in message
    assert not (primary.appliance.data_dir / "blobs" / "sha256" / sha).exists()

    with closing(sqlite3.connect(database(backup))) as connection, connection:
        connection.execute("DELETE FROM sessions WHERE id = ?", (damaged,))
    going = record_while_broken(backup, like, b"still going\n", ended=False)
    answer = establish(primary, backup)
    assert answer.status_code == 409, answer.text
    assert f"1 session(s) in progress (the first: {going})" in answer.json()["error"]["message"]

    assert sorted(s["id"] for s in ended(primary)) == before
    assert len(merge_audits(primary)) == audits
    assert role(primary) == "none" and role(backup) == "none"

    # The primary's own session, copied to the backup while it was live there, does not
    # hold the establishing up: the primary has its record.
    with closing(sqlite3.connect(database(backup))) as connection, connection:
        connection.execute("DELETE FROM sessions WHERE id = ?", (going,))
        connection.execute("UPDATE sessions SET ended_at = NULL WHERE id = ?", (like,))
    answer = establish(primary, backup)
    assert answer.status_code == 200, answer.text
    assert answer.json()["merged"]["merged"] == 0
    assert sorted(s["id"] for s in ended(primary)) == before


def peer_of(site: Site) -> PeerClient:
    return PeerClient(PeerAddress(site.appliance.host, site.appliance.port), KEY.encode())


def test_the_merge_endpoints_want_the_key_proved_and_a_primary_keeps_its_sessions(
    pair: tuple[Site, Site],
) -> None:
    primary, backup = pair
    prefix = "/api/v1/failover/peer/sessions"
    with backup.appliance.client() as client:
        assert client.get(prefix).status_code == 403
        assert client.get(f"{prefix}/recordings/{'0' * 64}").status_code == 403
    with peer_of(backup) as peer, backup.appliance.client() as client:
        proved = {TICKET_HEADER: peer.introduce().ticket}
        for bad in ({"limit": 0}, {"limit": 501}, {"after": "x" * 37}):
            assert client.get(prefix, params=bad, headers=proved).status_code in (400, 422)
        bad_hash = client.get(f"{prefix}/recordings/{'0' * 63}Z", headers=proved)
        assert bad_hash.status_code in (400, 404, 422)
        with pytest.raises(PeerRefusedError, match="holds no recording"):
            peer.call("GET", f"/sessions/recordings/{'0' * 64}")
    if role(primary) != "primary":
        assert establish(primary, backup).status_code == 200
    with peer_of(primary) as peer, pytest.raises(PeerRefusedError, match="primary of a pair"):
        peer.call("GET", "/sessions")
