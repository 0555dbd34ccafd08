"""Merging after a break (R32): the sessions a would-be backup completed while it stood
alone are brought to the intended primary before the backup joins, since its first sync
then replaces its site tables with the primary's.

Session records are immutable once ended and keyed by UUID, so merging is a union: the
primary takes, in one transaction, each ended record it lacks, after the recordings
they point to are in its blob store, fetched by hash and verified. A record it holds
already is left as it is. Its inserts are journaled like any change, so they reach the
backup with the normal sync. Any failure leaves the primary's records as they were.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from bastion.failover import blobs, changes, rules
from bastion.failover.peer import PeerClient
from bastion.failover.rules import FailoverError, Role
from bastion.failover.state import Pair
from bastion.failover.sync import SyncSite
from bastion.platform import audit
from bastion.platform.errors import ConflictError, NotFoundError
from bastion.platform.principals import Actor

PAGE = 500
IN_PROGRESS_MAX = 10_000
SESSIONS = "sessions"


@dataclass(frozen=True)
class MergeOutcome:
    merged: int = 0
    already_present: int = 0
    blobs_fetched: int = 0

    def summary(self) -> str:
        return (
            f"{self.merged} session(s) from the backup merged, {self.already_present} "
            f"already here, {self.blobs_fetched} recording(s) fetched."
        )


# -- pure: what a merged record keeps --------------------------------------------------------


def same_name(held: str | None, copied: str) -> bool:
    return held is not None and held.casefold() == copied.casefold()


def merged_record(
    record: dict[str, Any], accounts: dict[int, str], jump_clients: dict[int, str]
) -> dict[str, Any]:
    """The record as the primary keeps it: the names it copied in stay; an account or Jump
    Client id stays only when it names the same one here (ids are given by each appliance
    on its own, so the same number may be another account or client), else it is null."""
    kept = dict(record)
    account, client = record.get("account_id"), record.get("jump_client_id")
    if account is not None and not same_name(accounts.get(account), record["username"]):
        kept["account_id"] = None
    if client is not None and not same_name(jump_clients.get(client), record["jump_client_name"]):
        kept["jump_client_id"] = None
    return kept


def record_problem(record: dict[str, Any]) -> str:
    """Why a record sent by the backup cannot be merged ("" when it can)."""
    if not isinstance(record.get("id"), str) or not 0 < len(record["id"]) <= 36:
        return "a session record without a valid id"
    if record.get("ended_at") is None:
        return f"session {record['id']} has not ended"
    sha = record.get("recording_sha256")
    if sha is not None and not (isinstance(sha, str) and blobs.HEX64.match(sha)):
        return f"session {record['id']} names a recording that is not a SHA-256"
    return ""


# -- on the would-be backup --------------------------------------------------------------------


def _refuse_primary(pair: Pair) -> None:
    if pair.role is Role.PRIMARY:
        raise ConflictError(
            "This appliance is the primary of a pair; its sessions are not merged into another."
        )


def serve_sessions(sync: SyncSite, pair: Pair, after: str, limit: int) -> dict[str, Any]:
    """Ended session records by id after `after`; on the first page, the ids of those still
    in progress (the primary's own, copied here while they were live, among them)."""
    _refuse_primary(pair)
    table = sync.site.metadata.tables[SESSIONS]
    query = select(table).where(table.c.ended_at.is_not(None), table.c.id > after)
    with sync.site.engine.connect() as connection:
        rows = connection.execute(query.order_by(table.c.id).limit(limit)).mappings().all()
        answer: dict[str, Any] = {
            "sessions": [{k: changes.encode(v) for k, v in row.items()} for row in rows]
        }
        if not after:
            live = select(table.c.id).where(table.c.ended_at.is_(None)).limit(IN_PROGRESS_MAX)
            answer["in_progress"] = list(connection.scalars(live))
    return answer


def recording_file(sync: SyncSite, pair: Pair, sha256: str) -> Path:
    _refuse_primary(pair)
    path = sync.blobs_dir / sha256
    if not blobs.HEX64.match(sha256) or not path.is_file():
        raise NotFoundError(f"This appliance holds no recording {sha256[:64]}.")
    return path


# -- on the intended primary -------------------------------------------------------------------


class _Fresh:
    """The peer's ticket renewed before it runs out (it holds `rules.TICKET_SECONDS`), so
    a merge that fetches for long leaves the join after it a valid ticket."""

    def __init__(self, client: PeerClient) -> None:
        self.client, self._at = client, time.monotonic()

    def __call__(self) -> PeerClient:
        if time.monotonic() - self._at > rules.TICKET_SECONDS / 2:
            self.client.introduce()
            self._at = time.monotonic()
        return self.client


def merge(sync: SyncSite, client: PeerClient, actor: Actor) -> MergeOutcome:
    """Take the backup's ended sessions this appliance lacks, with their recordings; raises
    FailoverError (nothing merged) when that cannot be done whole."""
    table, fresh = sync.site.metadata.tables[SESSIONS], _Fresh(client)
    try:
        missing, present = _missing_records(sync.site.engine, table, fresh)
        fetched = _fetch_recordings(sync, fresh, missing)
        fresh()
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise FailoverError(
            f"The sessions of {client.address} could not be merged ({error}); nothing was "
            "merged and the pair is not established."
        ) from None
    merged = _insert(sync.site.engine, table, missing, actor, str(client.address), present, fetched)
    return MergeOutcome(merged, present + len(missing) - merged, fetched)


def _missing_records(
    engine: Engine, table: Table, fresh: _Fresh
) -> tuple[list[dict[str, Any]], int]:
    after, present = "", 0
    missing: list[dict[str, Any]] = []
    while True:
        answer = fresh().call("GET", "/sessions", params={"after": after, "limit": PAGE})
        if not after:
            in_progress = [str(i) for i in answer["in_progress"]]
            _refuse_in_progress(engine, table, fresh.client, in_progress)
        records = [_decoded(table, row) for row in answer.get("sessions", [])]
        if not records:
            return missing, present
        with engine.connect() as connection:
            held = _held(connection, table, [r["id"] for r in records])
        present += len(held)
        missing += [r for r in records if r["id"] not in held]
        after = records[-1]["id"]


def _refuse_in_progress(engine: Engine, table: Table, client: PeerClient, ids: list[str]) -> None:
    """A session in progress on the backup would be lost at its first sync, unless it is
    one of ours (copied there while it was live here, before a break)."""
    with engine.connect() as connection:
        own = sorted(set(ids) - _held(connection, table, ids))
    if own:
        raise FailoverError(
            f"{client.address} has {len(own)} session(s) in progress (the first: {own[0]}); "
            "their records would be lost when it becomes the backup. Let them end, or end "
            "them there (POST /api/v1/sessions/<id>/end), then establish the pair again."
        )


def _decoded(table: Table, row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise FailoverError("The backup sent a session record that is not one; nothing merged.")
    record = {name: changes.decode(value) for name, value in row.items() if name in table.c}
    problem = record_problem(record)
    if problem:
        raise FailoverError(f"The backup sent {problem}; nothing was merged.")
    return record


def _held(connection: Connection, table: Table, ids: Iterable[str]) -> set[str]:
    wanted = list(ids)
    found: set[str] = set()
    for start in range(0, len(wanted), changes.KEYS_PER_QUERY):
        chunk = wanted[start : start + changes.KEYS_PER_QUERY]
        found |= set(connection.scalars(select(table.c.id).where(table.c.id.in_(chunk))))
    return found


def _fetch_recordings(sync: SyncSite, fresh: _Fresh, records: list[dict[str, Any]]) -> int:
    wanted = {r["recording_sha256"] for r in records if r.get("recording_sha256")}
    lacking = sorted(wanted - set(blobs.listed(sync.blobs_dir)))
    for sha in lacking:
        with fresh().download(f"/sessions/recordings/{sha}") as response:
            try:
                part = blobs.receive(response, sync.partial_dir, sha)
            except blobs.BlobMismatchError:
                raise FailoverError(
                    f"The recording {sha[:16]}… of a session on {fresh.client.address} does not "
                    "match its SHA-256 (damaged there or on the way); nothing was merged and "
                    "the pair is not established. Check that appliance's recordings, then "
                    "establish again."
                ) from None
        blobs.settle(part, sync.blobs_dir, sha)
    return len(lacking)


def _insert(
    engine: Engine,
    table: Table,
    records: list[dict[str, Any]],
    actor: Actor,
    backup: str,
    present: int,
    fetched: int,
) -> int:
    """The records, kept as `merged_record` says, and the audit entry: in one transaction."""
    metadata, rows = table.metadata, []
    if records:
        with engine.connect() as connection:
            held = _held(connection, table, [r["id"] for r in records])
            accounts = _names(connection, metadata.tables["accounts"], "username")
            clients = _names(connection, metadata.tables["jump_clients"], "name")
        rows = [merged_record(r, accounts, clients) for r in records if r["id"] not in held]
    try:
        with engine.begin() as connection:
            if rows:
                connection.execute(insert(table), rows)
            audit.record_on(
                connection,
                actor,
                "failover.merge",
                backup,
                merged=len(rows),
                already_present=present + len(records) - len(rows),
                blobs_fetched=fetched,
            )
    except IntegrityError:
        raise FailoverError(
            "A session record arrived here while merging; nothing was merged. Establish again."
        ) from None
    except OperationalError as error:  # the database busy for longer than its timeout
        raise FailoverError(
            f"The merged sessions could not be written ({error.orig}); nothing was merged. "
            "Establish again."
        ) from None
    return len(rows)


def _names(connection: Connection, table: Table, column: str) -> dict[int, str]:
    return {int(i): str(n) for i, n in connection.execute(select(table.c.id, table.c[column]))}
