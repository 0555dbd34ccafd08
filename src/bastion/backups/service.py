"""Take a backup of the site and restore one: encrypted, verified first, all-or-nothing.

A backup holds the site tables of one consistent database snapshot (machine
state such as listen addresses and live sessions stays with the machine).
Restoring checks the passphrase and every byte before anything changes, keeps
an automatic backup of what it replaces, migrates an older backup forward in a
scratch database, and replaces the site tables in one transaction.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Connection, Engine, MetaData

from bastion.accounts.sign_in import end_all_sessions_on
from bastion.backups import archive, container, site_tables
from bastion.backups.rules import BackupError, BackupHeader, BackupMetadata, passphrase_problems
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.db.engine import known_revisions, migrate_to, schema_revision
from bastion.platform.errors import InvalidInputError
from bastion.platform.principals import Actor
from bastion.platform.settings import SCRATCH_DIR
from bastion.platform.unit_of_work import UnitOfWork

DATABASE_MEMBER = "site.sqlite.zst"
AUTOMATIC_DIR = "backups/automatic"


def _keep(key: bytes, _bound_to: str) -> bytes:
    """Keys as they are: for a site whose keys are not sealed by a vault of this machine."""
    return key


@dataclass(frozen=True)
class BackupSite:
    """What a backup is taken from and restored into."""

    engine: Engine
    metadata: MetaData
    data_dir: Path
    site_name: str
    software_version: str
    unseal_key: site_tables.KeyTransform = _keep
    seal_key: site_tables.KeyTransform = _keep
    after_restore: list[Callable[[], None]] = field(default_factory=list)
    before_restore: list[Callable[[], None]] = field(default_factory=list)
    """Checks that may refuse a restore (they raise a ServiceError saying why)."""
    upload_limit_bytes: int = 8 * 1024**3
    """Uploaded backups larger than this are refused before they reach the disk."""

    @property
    def scratch_dir(self) -> Path:
        path = self.data_dir / SCRATCH_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class RestoreReport:
    header: BackupHeader
    migrated_from: str | None
    rows: dict[str, int]
    automatic_backup: Path
    sessions_ended: int


def check_new_passphrase(passphrase: str, confirmation: str | None = None) -> None:
    problems = passphrase_problems(passphrase, confirmation)
    if problems:
        raise InvalidInputError(" ".join(problems))


def record_created(uow: UnitOfWork, actor: Actor, header: BackupHeader, where: str) -> None:
    meta = header.metadata
    audit.record(
        uow, actor, "backup.create", meta.site_name, schema_revision=meta.schema_revision, to=where
    )


def _metadata(site: BackupSite) -> BackupMetadata:
    return BackupMetadata(
        software_version=site.software_version,
        schema_revision=schema_revision(site.engine) or "",
        site_name=site.site_name,
        created_at=utc_now(),
        contents=("database",),
    )


@contextmanager
def _workdir(site: BackupSite, prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir=site.scratch_dir, prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _sealed(
    site: BackupSite, write: Callable[[list[archive.Member]], BackupHeader]
) -> BackupHeader:
    """Snapshot the site, compress it and hand it to `write` as the backup's one member."""
    with _workdir(site, "backup-") as work:
        database = work / "site.sqlite"
        site_tables.take(site.engine, site.metadata, database, site.unseal_key)
        with database.open("rb") as raw:
            try:
                return write([(DATABASE_MEMBER, site_tables.compressed(raw))])
            except BackupError as error:
                raise InvalidInputError(str(error)) from None


def write(site: BackupSite, out: BinaryIO, passphrase: str) -> BackupHeader:
    """Write an encrypted backup of the site into `out` while the appliance keeps serving."""
    metadata = _metadata(site)
    return _sealed(site, lambda members: container.write_backup(out, metadata, members, passphrase))


def write_file(site: BackupSite, directory: Path, passphrase: str, label: str) -> Path:
    """A backup file in `directory`, written atomically; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{site.site_name}-{label}-{stamp}.bastion"
    metadata = _metadata(site)
    _sealed(site, lambda members: container.write_backup_file(path, metadata, members, passphrase))
    return path


def restore(site: BackupSite, actor: Actor, upload: BinaryIO, passphrase: str) -> RestoreReport:
    """Verify the whole upload, keep a backup of the current site, then replace it at once.

    Once the upload is unpacked, three jobs run side by side (they spend their time in
    zstd and SQLite, outside the GIL): the backup of the current site, SQLite's check of
    the unpacked database, and its preparation and copy over the live one, which commits
    only once the other two have succeeded."""
    for check in site.before_restore:
        check()
    verified = _open(site, upload, passphrase)
    migrate_from = _migration_start(site, verified.header)
    with _workdir(site, "restore-") as work, ThreadPoolExecutor(2) as background:
        keeping = background.submit(
            write_file, site, site.data_dir / AUTOMATIC_DIR, passphrase, "before-restore"
        )
        database = work / "site.sqlite"
        _unpack(verified, database)
        checking = background.submit(_check, database)

        def before_commit() -> None:
            checking.result()
            keeping.result()

        try:
            if migrate_from is not None:
                _migrate(database)
            rows, ended = _replace(site, actor, verified.header, database, before_commit)
        except Exception:
            checking.result()  # a damaged database explains the failure best
            raise
        automatic = keeping.result()
    for hook in site.after_restore:
        hook()
    return RestoreReport(verified.header, migrate_from, rows, automatic, ended)


def _replace(
    site: BackupSite,
    actor: Actor,
    header: BackupHeader,
    database: Path,
    before_commit: Callable[[], object],
) -> tuple[dict[str, int], int]:
    """The site tables from `database`, sessions ended and the restore audited, at once;
    returns the rows per table and how many web sessions ended."""
    ended: list[int] = []

    def record(connection: Connection, rows: dict[str, int]) -> None:
        _record_restore(connection, actor, header, rows, ended[0])

    try:
        rows = site_tables.load(
            site.engine,
            site.metadata,
            database,
            site.seal_key,
            before=lambda connection: ended.append(end_all_sessions_on(connection)),
            after=record,
            before_commit=before_commit,
        )
    except BackupError as error:
        raise InvalidInputError(f"{error} Nothing was changed.") from None
    return rows, ended[0]


def _open(site: BackupSite, upload: BinaryIO, passphrase: str) -> container.VerifiedBackup:
    try:
        verified = container.open_backup(upload, passphrase, running_version=site.software_version)
    except BackupError as error:
        raise InvalidInputError(f"{error} Nothing was changed.") from None
    if DATABASE_MEMBER not in {m.name for m in verified.members}:
        raise InvalidInputError("This backup holds no site database. Nothing was changed.")
    return verified


def _unpack(verified: container.VerifiedBackup, database: Path) -> None:
    """Decrypt (authenticating again) and decompress the database member in one pass."""
    try:
        with site_tables.decompressing_into(database) as out:
            verified.copy_member(DATABASE_MEMBER, out)
    except BackupError as error:
        raise InvalidInputError(f"{error} Nothing was changed.") from None


def _check(database: Path) -> None:
    try:
        site_tables.check(database)
    except BackupError as error:
        raise InvalidInputError(f"{error} Nothing was changed.") from None


def _migration_start(site: BackupSite, header: BackupHeader) -> str | None:
    """None when the backup's schema is the running one, else the revision to migrate from."""
    revision = header.metadata.schema_revision
    if revision == schema_revision(site.engine):
        return None
    if revision not in known_revisions():
        raise InvalidInputError(
            f"The backup's database schema {revision!r} is unknown to this software "
            f"({site.software_version}); restore it on the version that took it. "
            "Nothing was changed."
        )
    return revision


def _migrate(database: Path) -> None:
    scratch = site_tables.sqlite_engine(database)
    try:
        migrate_to(scratch, "head")
    finally:
        scratch.dispose()


def _record_restore(
    connection: Connection, actor: Actor, header: BackupHeader, rows: dict[str, int], ended: int
) -> None:
    """In the restore's own transaction, after the audit log was replaced by the backup's."""
    meta = header.metadata
    audit.record_on(
        connection,
        actor,
        "backup.restore",
        meta.site_name,
        software_version=meta.software_version,
        schema_revision=meta.schema_revision,
        created_at=meta.created_at.isoformat(),
        rows=sum(rows.values()),
        sessions_ended=ended,
    )


def take_snapshot(site: BackupSite, target: Path) -> None:
    """The site tables as a new SQLite file at `target` (private keys opened), as a backup
    holds them: for a failover backup's first sync."""
    site_tables.take(site.engine, site.metadata, target, site.unseal_key)


def load_snapshot(
    site: BackupSite, snapshot: Path, after: Callable[[Connection], object]
) -> dict[str, int]:
    """Replace the site tables with a snapshot of the same schema revision (keys sealed for
    this machine, signed-in sessions ended, `after` in the same transaction), or nothing."""
    _check(snapshot)
    scratch = site_tables.sqlite_engine(snapshot)
    try:
        revision = schema_revision(scratch)
    finally:
        scratch.dispose()
    if revision != schema_revision(site.engine):
        raise InvalidInputError(
            f"The snapshot's database schema {revision!r} is not this appliance's "
            f"({schema_revision(site.engine)!r}); both must run the same version."
        )
    try:
        return site_tables.load(
            site.engine,
            site.metadata,
            snapshot,
            site.seal_key,
            before=end_all_sessions_on,
            after=lambda connection, _rows: after(connection),
        )
    except BackupError as error:
        raise InvalidInputError(f"{error} Nothing was changed.") from None


def describe(header: BackupHeader) -> dict[str, str]:
    """The header in words, for `bastion backup inspect` and the upload page."""
    meta = header.metadata
    return {
        "format version": str(header.format_version),
        "software version": meta.software_version,
        "database schema": meta.schema_revision,
        "site": meta.site_name,
        "created": _utc(meta.created_at),
        "contents": ", ".join(meta.contents),
        "encryption": f"{header.sealing.cipher}, scrypt n={header.kdf.n} r={header.kdf.r}",
    }


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
