"""One pass: check the site's version, sign in, then save every ended session's report
and recording that is not already saved whole, verifying each recording against the
SHA-256 and size in its report before it gets its final name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bastion.integration_client.errors import (
    DigestMismatchError,
    SiteRefusedError,
    VersionMismatchError,
)
from bastion.integration_client.site import SessionRecord, SiteClient
from bastion.integration_client.store import Saved, Store
from bastion.platform import build
from bastion.platform.clock import utc_now


@dataclass(frozen=True)
class Credentials:
    client_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class BackupPlan:
    """Make and keep a backup of the site each pass, under this passphrase."""

    passphrase: str = field(repr=False)
    keep: int = 7


@dataclass
class PassReport:
    fetched: list[str] = field(default_factory=list)
    refetched: list[str] = field(default_factory=list)
    """Saved before, but a file no longer matched its digest."""
    waiting: list[str] = field(default_factory=list)
    """Ended, but its recording is not downloadable yet; tried again next pass."""
    failed: list[str] = field(default_factory=list)
    """What went wrong with single sessions (the pass went on with the others)."""
    live: int = 0
    backup: Path | None = None
    stopped: bool = False


def own_version() -> str:
    return build.site_version()


def check_version(site: SiteClient) -> str:
    """The site's version, if it is this client's; it never upgrades itself (R17)."""
    theirs, ours = site.about().site_version, own_version()
    if theirs != ours:
        raise VersionMismatchError(theirs, ours)
    return theirs


def run_pass(
    site: SiteClient,
    credentials: Credentials,
    root: Path,
    stopping: Callable[[], bool] = lambda: False,
    saved_one: Callable[[str], None] = lambda _: None,
    backups: BackupPlan | None = None,
) -> PassReport:
    check_version(site)
    site.sign_in(credentials.client_id, credentials.secret)
    store, report = Store.open(root), PassReport()
    for record, raw in site.sessions():
        if stopping():
            report.stopped = True
            return report
        if not record.ended:
            report.live += 1
        elif not store.intact(record.id) and _save(site, store, record, raw, report):
            saved_one(record.id)
    if backups is not None and not stopping():
        report.backup = _backup(site, store, backups)
    return report


def _backup(site: SiteClient, store: Store, plan: BackupPlan) -> Path:
    """A new backup, kept only once the site's own check reads it as this site's."""
    about = site.about()
    final = store.backup_path(about.site, utc_now().strftime("%Y%m%dT%H%M%SZ"))
    with store.temporary(final) as temp:
        try:
            size, sha256 = site.create_backup(plan.passphrase, temp)
        except SiteRefusedError as error:
            raise SiteRefusedError(
                f"The site refused to make a backup ({error}); the passphrase is read from "
                "--backup-passphrase-file.",
                error.status,
            ) from None
        header = site.inspect_backup(temp)
        if header.get("site") != about.site:
            raise DigestMismatchError(
                f"The new backup ({size} bytes, SHA-256 {sha256}) is of "
                f"{header.get('site')!r}, not of {about.site!r}; nothing was kept."
            )
        store.keep(temp, final)
    store.prune_backups(plan.keep)
    return final


def _save(
    site: SiteClient,
    store: Store,
    record: SessionRecord,
    raw: dict[str, object],
    report: PassReport,
) -> bool:
    """Save one ended session whole; False if it is left for a later pass."""
    recording = None
    if record.recording_sha256 is not None:
        try:
            recording = _fetch_recording(site, store, record)
        except SiteRefusedError as error:
            if error.status not in (404, 409):
                raise
            report.waiting.append(record.id)
            return False
        except DigestMismatchError as error:
            report.failed.append(str(error))
            return False
    report_sha256 = store.save_report(record.id, raw)
    tampered = record.id in store.saved
    store.mark_saved(record.id, Saved(report_sha256, recording))
    (report.refetched if tampered else report.fetched).append(record.id)
    return True


def _fetch_recording(site: SiteClient, store: Store, record: SessionRecord) -> str:
    final = store.recording_path(record.id)
    with store.temporary(final) as temp:
        size, sha256 = site.download_recording(record.id, temp)
        if sha256 != record.recording_sha256 or (
            record.recording_size is not None and size != record.recording_size
        ):
            raise DigestMismatchError(
                f"The recording of session {record.id} is not what its report says "
                f"({size} bytes, SHA-256 {sha256}; the report says {record.recording_size} "
                f"bytes, {record.recording_sha256}); nothing was kept, it is fetched again "
                "next pass."
            )
        store.keep(temp, final)
    return sha256
