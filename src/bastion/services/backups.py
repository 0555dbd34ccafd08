"""Take a backup of the site and restore one: encrypted, verified first, all-or-nothing.

A backup holds the site tables of one consistent database snapshot (machine
state such as listen addresses and live sessions stays with the machine).
Restoring checks the passphrase and every byte before anything changes, keeps
an automatic backup of what it replaces, migrates an older backup forward in a
scratch database, and replaces the site tables in one transaction.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Engine, MetaData, delete
from sqlalchemy.orm import Session

from bastion.adapters import backup_file
from bastion.adapters.db import snapshot
from bastion.adapters.db.engine import known_revisions, make_engine, migrate_to, schema_revision
from bastion.adapters.db.models import ApiToken, WebSession
from bastion.domain.backup_format import BackupError, BackupHeader, BackupMetadata
from bastion.services import audit
from bastion.services.audit import Actor
from bastion.services.errors import InvalidInputError
from bastion.services.ports import utc_now

DATABASE_MEMBER = "database.jsonl"
AUTOMATIC_DIR = "backups/automatic"


@dataclass(frozen=True)
class BackupSite:
    """What a backup is taken from and restored into."""

    engine: Engine
    metadata: MetaData
    data_dir: Path
    site_name: str
    software_version: str
    export_filter: snapshot.RowFilter | None = None
    import_filter: snapshot.RowFilter | None = None
    after_restore: list[Callable[[], None]] = field(default_factory=list)

    @property
    def scratch_dir(self) -> Path:
        path = self.data_dir / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class RestoreReport:
    header: BackupHeader
    migrated_from: str | None
    rows: dict[str, int]
    automatic_backup: Path
    sessions_ended: int


def _metadata(site: BackupSite) -> BackupMetadata:
    return BackupMetadata(
        software_version=site.software_version,
        schema_revision=schema_revision(site.engine) or "",
        site_name=site.site_name,
        created_at=utc_now(),
        contents=("database",),
    )


def _members(site: BackupSite) -> list[backup_file.Member]:
    lines = snapshot.dump(site.engine, site.metadata, site.export_filter)
    return [(DATABASE_MEMBER, io.BufferedReader(snapshot.LineStream(lines), 1 << 20))]


def write(site: BackupSite, out: BinaryIO, passphrase: str) -> BackupHeader:
    """Stream an encrypted backup of the site into `out` while the appliance keeps serving."""
    try:
        return backup_file.write_backup(out, _metadata(site), _members(site), passphrase)
    except BackupError as error:
        raise InvalidInputError(str(error)) from None


def write_file(site: BackupSite, directory: Path, passphrase: str, label: str) -> Path:
    """A backup file in `directory`, written atomically; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{site.site_name}-{label}-{stamp}.bastion"
    try:
        backup_file.write_backup_file(path, _metadata(site), _members(site), passphrase)
    except BackupError as error:
        raise InvalidInputError(str(error)) from None
    return path


def restore(site: BackupSite, actor: Actor, upload: BinaryIO, passphrase: str) -> RestoreReport:
    """Verify the whole upload, keep a backup of the current site, then replace it at once."""
    verified = _open(site, upload, passphrase)
    migrate_from = _migration_start(site, verified.header)
    automatic = write_file(site, site.data_dir / AUTOMATIC_DIR, passphrase, "before-restore")
    workdir = Path(tempfile.mkdtemp(dir=site.scratch_dir, prefix="restore-"))
    try:
        verified.extract_to(workdir / "members")
        database = workdir / "members" / DATABASE_MEMBER
        if migrate_from is not None:
            database = _migrate_forward(site, database, migrate_from, workdir)
        rows, ended = _replace_site(site, actor, database, verified.header)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for hook in site.after_restore:
        hook()
    return RestoreReport(verified.header, migrate_from, rows, automatic, ended)


def _open(site: BackupSite, upload: BinaryIO, passphrase: str) -> backup_file.VerifiedBackup:
    try:
        verified = backup_file.open_backup(
            upload, passphrase, running_version=site.software_version
        )
    except BackupError as error:
        raise InvalidInputError(f"{error} Nothing was changed.") from None
    if DATABASE_MEMBER not in {m.name for m in verified.members}:
        raise InvalidInputError("This backup holds no site database. Nothing was changed.")
    return verified


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


def _migrate_forward(site: BackupSite, database: Path, revision: str, workdir: Path) -> Path:
    """Load the old rows into a scratch database at their revision, migrate it, dump it again."""
    scratch = make_engine(f"sqlite:///{workdir / 'scratch.sqlite'}")
    try:
        migrate_to(scratch, revision)
        old = MetaData()
        old.reflect(scratch)
        with scratch.begin() as connection, database.open("rb") as stream:
            snapshot.load(connection, old, stream)
        migrate_to(scratch, "head")
        migrated = workdir / "migrated.jsonl"
        with migrated.open("wb") as out:
            for line in snapshot.dump(scratch, site.metadata):
                out.write(line)
    finally:
        scratch.dispose()
    return migrated


def _replace_site(
    site: BackupSite, actor: Actor, database: Path, header: BackupHeader
) -> tuple[dict[str, int], int]:
    with site.engine.begin() as connection, database.open("rb") as stream:
        ended = connection.execute(delete(WebSession)).rowcount
        connection.execute(delete(ApiToken))
        counts = snapshot.load(connection, site.metadata, stream, site.import_filter)
        meta = header.metadata
        entry = audit.new_entry(
            actor,
            "backup.restore",
            meta.site_name,
            software_version=meta.software_version,
            schema_revision=meta.schema_revision,
            created_at=meta.created_at.isoformat(),
            rows=counts.total,
            sessions_ended=ended,
        )
        with Session(bind=connection) as session:
            session.add(entry)
            session.flush()
    return counts.rows, int(ended or 0)


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
