"""The backup's pull from the primary, and what the primary serves it.

A sync: the first time (or when the primary's journal no longer reaches back to the
backup's position) a consistent snapshot of the site tables with the journal position
it corresponds to, taken and loaded by the backup and restore code; then the journal
since that position in batches, each applied in one transaction; then the blobs the
backup lacks, by hash, verified, resumed where a cut left them.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bastion.backups import service as backups
from bastion.backups.service import BackupSite
from bastion.failover import blobs, changes, journal, state
from bastion.failover.peer import PeerClient
from bastion.failover.rules import FailoverError, Role
from bastion.failover.state import Pair
from bastion.platform.clock import utc_now
from bastion.platform.errors import ConflictError, InvalidInputError, NotFoundError
from bastion.platform.files import LockBusyError, exclusively
from bastion.platform.unit_of_work import UnitOfWork

log = logging.getLogger("bastion.failover.sync")

FIRST_SYNC_SECONDS = 60
DEFAULT_INTERVAL_SECONDS = 300
EPOCH_HEADER = "X-Bastion-Journal-Epoch"
POSITION_HEADER = "X-Bastion-Journal-Position"


@dataclass
class SyncSite:
    """What a sync reads and writes on this appliance."""

    site: BackupSite
    lock: threading.Lock

    @property
    def blobs_dir(self) -> Path:
        return self.site.data_dir / "blobs" / "sha256"

    @property
    def partial_dir(self) -> Path:
        return self.site.data_dir / "blobs" / "failover-partial"


@dataclass(frozen=True)
class SyncOutcome:
    snapshot: bool
    rows: int
    blobs: int


# -- on the primary --------------------------------------------------------------------------


def _require(pair: Pair, role: Role) -> None:
    if pair.role is not role:
        raise ConflictError(f"This appliance is not a {role.value} (it is {pair.role.value}).")


def require_primary(pair: Pair) -> None:
    _require(pair, Role.PRIMARY)


def serve_snapshot(sync: SyncSite, pair: Pair) -> tuple[Path, str, int]:
    """A snapshot file (the caller deletes it) and the journal epoch and position it holds
    at least: the position is read first, so changes after it may be in it too, and
    applying them again changes nothing."""
    _require(pair, Role.PRIMARY)
    with sync.site.engine.begin() as connection:
        epoch, position = journal.epoch(connection), journal.settled_head(connection)
    descriptor, name = tempfile.mkstemp(dir=sync.site.scratch_dir, suffix=".sqlite")
    os.close(descriptor)
    path = Path(name)
    try:
        backups.take_snapshot(sync.site, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, epoch, position


def serve_changes(sync: SyncSite, pair: Pair, epoch: str, since: int) -> dict[str, Any]:
    """The changes after `since`; what the backup confirmed it holds is dropped first."""
    _require(pair, Role.PRIMARY)
    with sync.site.engine.begin() as connection:
        if epoch == journal.epoch(connection):
            journal.prune_confirmed(connection, since)
    site = sync.site
    try:
        batch = changes.read(site.engine, site.metadata, epoch, since, site.unseal_key)
    except changes.SnapshotNeededError:
        return {"snapshot_needed": True}
    return batch.as_json()


def blob_file(sync: SyncSite, pair: Pair, sha256: str) -> Path:
    _require(pair, Role.PRIMARY)
    path = sync.blobs_dir / sha256
    if not blobs.HEX64.match(sha256) or not path.is_file():
        raise NotFoundError(f"This appliance holds no blob {sha256[:64]}.")
    return path


# -- on the backup ---------------------------------------------------------------------------


def pull(sync: SyncSite, pair: Pair, key: bytes, accepted: frozenset[str]) -> SyncOutcome:
    """One whole sync, the primary's certificate held to `accepted`; raises FailoverError
    (or an error of the transport) on the way."""
    _require(pair, Role.BACKUP)
    peer = pair.peer
    assert peer is not None  # a backup always has its primary

    def connect() -> PeerClient:
        return PeerClient(peer.address, key, accepted)

    with sync.lock, _only_sync(sync), connect() as client:
        took_snapshot, rows = _pull_rows(sync, client)
        fetched = _pull_blobs(sync, client, connect)
    return SyncOutcome(took_snapshot, rows, fetched)


@contextmanager
def _only_sync(sync: SyncSite) -> Iterator[None]:
    """One sync at a time on this appliance, across processes (a console's Sync Now and
    the server's periodic sync)."""
    try:
        with exclusively(sync.site.data_dir / "state" / "failover-sync.lock"):
            yield
    except LockBusyError:
        raise FailoverError(
            "Another sync is running on this appliance; wait for it to end, then try again."
        ) from None


def _pull_rows(sync: SyncSite, client: PeerClient) -> tuple[bool, int]:
    site, took_snapshot, rows = sync.site, False, 0
    epoch, position = changes.position(site.engine)
    if not epoch:
        epoch, position = _pull_snapshot(sync, client)
        took_snapshot = True
    while True:
        answer = client.call("POST", "/changes", json={"epoch": epoch, "since": position})
        if answer.get("snapshot_needed"):
            if took_snapshot:
                raise FailoverError("The primary's journal moved on while its snapshot loaded.")
            epoch, position = _pull_snapshot(sync, client)
            took_snapshot = True
            continue
        batch = changes.Batch.from_json(answer)
        try:
            changes.apply(site.engine, site.metadata, batch, epoch, site.seal_key)
        except changes.SnapshotNeededError as error:
            if took_snapshot:
                raise FailoverError(
                    f"The primary's changes could not be applied: {error}"
                ) from None
            log.warning("the primary's changes need a snapshot here: %s", error)
            epoch, position = _pull_snapshot(sync, client)
            took_snapshot = True
            continue
        rows, position = rows + batch.rows, batch.through
        if batch.through >= batch.head:
            return took_snapshot, rows


def _pull_snapshot(sync: SyncSite, client: PeerClient) -> tuple[str, int]:
    with tempfile.TemporaryDirectory(dir=sync.site.scratch_dir, prefix="failover-") as work:
        target = Path(work) / "site.sqlite"
        with client.download("/snapshot") as response, target.open("wb") as out:
            epoch = response.headers[EPOCH_HEADER]
            position = int(response.headers[POSITION_HEADER])
            for chunk in response.iter_bytes(blobs.CHUNK):
                out.write(chunk)
        try:
            backups.load_snapshot(sync.site, target, lambda c: changes.settle(c, epoch, position))
        except InvalidInputError as error:
            raise FailoverError(f"The primary's snapshot was refused: {error}") from None
    return epoch, position


BLOB_STREAMS = 2
"""Blobs fetched at once, each over its own connection: while one waits for the primary
to read the next chunk, the other moves bytes."""
SETTLING = 2
"""Fetched blobs put on disk at once, apart from the fetches (a disk sync takes a while,
and the next blob's bytes move meanwhile)."""


def _pull_blobs(sync: SyncSite, client: PeerClient, connect: Callable[[], PeerClient]) -> int:
    """Every blob the backup lacks, `BLOB_STREAMS` at a time, each put on disk and into
    the store apart from the fetches; the first failure stops the others after the blob
    each is fetching (whole blobs stay, a part file resumes). Returns once every fetched
    blob is in the store."""
    listed = {str(k): int(v) for k, v in client.call("GET", "/blobs")["blobs"].items()}
    todo = iter(blobs.missing(sync.blobs_dir, listed))
    taking, failed = threading.Lock(), threading.Event()
    settling = ThreadPoolExecutor(SETTLING, thread_name_prefix="failover-blob-sync")
    settled: list[Future[None]] = []

    def settle(part: Path, sha: str) -> None:
        try:
            blobs.settle(part, sync.blobs_dir, sha)
        except BaseException:
            failed.set()
            raise

    def fetch_with(peer: PeerClient) -> int:
        fetched = 0
        while not failed.is_set():
            with taking:
                sha = next(todo, None)
            if sha is None:
                break
            try:
                part = _fetch_blob(sync, peer, sha, listed[sha])
            except BaseException:
                failed.set()
                raise
            with taking:
                settled.append(settling.submit(settle, part, sha))
            fetched += 1
        return fetched

    def fetch_with_own() -> int:
        with connect() as own:
            return fetch_with(own)

    with (
        settling,
        ThreadPoolExecutor(max(1, BLOB_STREAMS - 1), thread_name_prefix="failover-blobs") as pool,
    ):
        others = [pool.submit(fetch_with_own) for _ in range(BLOB_STREAMS - 1)]
        try:
            mine = fetch_with(client)
        finally:
            done = [f.exception() for f in others]  # wait for each; the first error wins
            done += [f.exception() for f in list(settled)]
    problems = [e for e in done if e is not None]
    if problems:
        raise problems[0]
    return mine + sum(f.result() for f in others)


def _fetch_blob(sync: SyncSite, client: PeerClient, sha: str, size: int) -> Path:
    """The blob fetched into its part file, whole and verified (not yet settled)."""
    start = blobs.resume_from(sync.partial_dir, sha)
    if start >= size:  # fetched whole when a sync was cut before it settled, or not it
        part = blobs.whole(sync.partial_dir, sha) if start == size else None
        if part is not None:
            return part
        blobs.part_path(sync.partial_dir, sha).unlink(missing_ok=True)
        start = 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    with client.download(f"/blobs/{sha}", headers=headers) as response:
        try:
            return blobs.receive(response, sync.partial_dir, sha)
        except blobs.BlobMismatchError as error:
            raise FailoverError(str(error)) from None


INTERVAL_SETTING = "failover.sync_interval_seconds"


INTERVAL_RANGE = (60, 86_400)


def interval_problem(seconds: int) -> str:
    low, high = INTERVAL_RANGE
    if not low <= seconds <= high:
        return f"The sync interval must be between {low} and {high} seconds (one day)."
    return ""


def interval_seconds(uow: UnitOfWork) -> int:
    """The site's sync interval (a site setting, so both appliances read the same)."""
    return int(uow.settings.get(INTERVAL_SETTING, DEFAULT_INTERVAL_SECONDS))


def due(
    pair: Pair, now: datetime, interval_seconds: int, first_after: float = FIRST_SYNC_SECONDS
) -> bool:
    """A backup syncs `first_after` seconds (about a minute) after it joined (or became
    the backup in a swap), then every interval."""
    if pair.role is not Role.BACKUP:
        return False
    if not pair.last_sync_time:
        joined = datetime.fromisoformat(pair.role_since or pair.established_at)
        return now >= joined + timedelta(seconds=first_after)
    last = datetime.fromisoformat(pair.last_sync_time)
    return now >= last + timedelta(seconds=interval_seconds)


def record(state_dir: Path, status: str) -> Pair:
    return state.record_sync(state_dir, utc_now().isoformat(), status)
