"""`/appliance > Updates`: check, download, import offline bundles, install license add-ons.

Releases are read from the update service through the appliance's TUF client
(`client.py`, over the update channel of `channel.py`) and verified there; this
module decides what an administrator may do with each release (a release whose
last install was rolled back is listed as such), keeps the installed versions
and the licensed counts, writes every step to the audit log, and turns the
client's failures into service errors that say which kind of failure it was
and what to do (R23). Base and site releases wait in storage once downloaded;
a license add-on changes the licensed counts at once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bastion.platform import audit, build
from bastion.platform.clock import utc_now
from bastion.platform.errors import ConflictError, InvalidInputError, NotFoundError, ServiceError
from bastion.platform.files import LockBusyError, exclusively
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork
from bastion.releases.versions import (
    ReleaseKind,
    ReleaseState,
    Version,
    VersionError,
    parse_version,
)
from bastion.supervisor import slots
from bastion.supervisor.journal import rolled_back
from bastion.supervisor.state import InstallState
from bastion.updates import client as uc
from bastion.updates import rules
from bastion.updates.channel import UpdateSetup as UpdateSetup  # part of this service's face
from bastion.updates.channel import client, in_effect
from bastion.updates.client import ReleaseStatus as ReleaseStatus  # part of this service's face
from bastion.updates.errors import UpdateDependencyError, failure_of
from bastion.updates.failures import UpdateClientError

LICENSE_SETTING = "updates.license"
IMPORTED_SETTING = "updates.imported_bundles"
"""The download keys of the bundles imported last (hashed), with when."""
IMPORTS_KEPT = 100
Progress = Callable[[int, int], None]


# Installed versions and the license.


@dataclass(frozen=True)
class License:
    version: str
    representatives: int
    endpoints: int
    installed_at: str


def license_of(uow: UnitOfWork) -> License | None:
    stored = uow.settings.get(LICENSE_SETTING)
    if not isinstance(stored, dict):
        return None
    return License(
        str(stored["version"]),
        int(stored["representatives"]),
        int(stored["endpoints"]),
        str(stored["installed_at"]),
    )


def installed_versions(uow: UnitOfWork, data_dir: Path) -> dict[ReleaseKind, Version]:
    """What is installed: base and site from the slot links (a base install does not
    restart the worker; a console command may run other code), the license from the
    database."""
    found: dict[ReleaseKind, Version] = {}
    lic = license_of(uow)
    texts = {
        ReleaseKind.BASE: slots.base_version(data_dir) or build.base_version(),
        ReleaseKind.SITE: slots.installed_version(data_dir, slots.CURRENT) or build.site_version(),
        ReleaseKind.LICENSE: lic.version if lic else "",
    }
    for kind, text in texts.items():
        try:
            found[kind] = parse_version(text)
        except VersionError:
            continue
    return found


# Release rows, as the page, the API and the command line show them.


@dataclass(frozen=True)
class ReleaseRow:
    name: str
    kind: str
    version: str
    state: str
    reason: str
    length: int
    downloaded: bool
    licensed: Mapping[str, int]

    @property
    def can_download(self) -> bool:
        return self.state in (ReleaseState.INSTALLABLE, ReleaseState.BLOCKED, rules.ROLLED_BACK)

    @property
    def can_install(self) -> bool:
        return self.kind == ReleaseKind.LICENSE and self.state == ReleaseState.INSTALLABLE

    @property
    def rolled_back(self) -> bool:
        """Its last install was rolled back: installed again only on an explicit retry."""
        return self.state == rules.ROLLED_BACK


def rolled_back_releases(setup: UpdateSetup) -> dict[str, str]:
    """Releases whose last install was rolled back, and why."""
    history = InstallState(setup.data_dir).history()
    names = rolled_back(history)
    return {entry.release: entry.reason for entry in history if entry.release in names}


def _row(setup: UpdateSetup, status: uc.ReleaseStatus, rolled: Mapping[str, str]) -> ReleaseRow:
    found = status.assessment
    stored = setup.packages_dir / status.target.hashes["sha256"]
    state, reason = found.state.value, found.reason
    if status.release.name in rolled and found.state is ReleaseState.INSTALLABLE:
        state, reason = rules.ROLLED_BACK, rules.rolled_back_reason(rolled[status.release.name])
    return ReleaseRow(
        name=status.release.name,
        kind=status.release.kind.value,
        version=str(status.release.version),
        state=state,
        reason=reason,
        length=status.target.length,
        downloaded=stored.is_file(),
        licensed=dict(status.info.licensed),
    )


def _rows(setup: UpdateSetup, found: list[uc.ReleaseStatus]) -> list[ReleaseRow]:
    rolled = rolled_back_releases(setup)
    return [_row(setup, s, rolled) for s in found if _listed(s)]


def _known(setup: UpdateSetup, uow: UnitOfWork) -> list[uc.ReleaseStatus]:
    """Releases in the metadata this appliance verified last; no network."""
    if not (setup.tuf_dir / "targets.json").is_file():
        return []
    try:
        return uc.statuses(
            uc.read_targets(setup.tuf_dir), installed_versions(uow, setup.data_dir), setup.site
        )
    except UpdateClientError as error:
        raise failure_of(error, online=False) from None


def known_statuses(uow: UnitOfWork, setup: UpdateSetup) -> list[uc.ReleaseStatus]:
    return _known(setup, uow)


def known_releases(uow: UnitOfWork, setup: UpdateSetup) -> list[ReleaseRow]:
    """The Available Updates table from the last verified check, download or bundle."""
    return _rows(setup, _known(setup, uow))


def _listed(status: uc.ReleaseStatus) -> bool:
    return status.assessment.state is not ReleaseState.LOWER_THAN_INSTALLED


def _failed(uow: UnitOfWork, actor: Actor, action: str, target: str, error: ServiceError) -> None:
    """A failed step is audited too: the error goes up as recorded, so the audit entry (and
    nothing else of the step) is kept."""
    uow.session.rollback()
    audit.record(uow, actor, f"{action}.failed", target, reason=str(error))
    error.recorded = True


@contextmanager
def _step(uow: UnitOfWork, actor: Actor, action: str, target: str, online: bool) -> Iterator[None]:
    """Audit a refused step and raise it as a service error that names its kind."""
    try:
        yield
    except UpdateClientError as error:
        failure = failure_of(error, online)
        _failed(uow, actor, action, target, failure)
        raise failure from None
    except ServiceError as error:
        _failed(uow, actor, action, target, error)
        raise


@contextmanager
def _exclusive(setup: UpdateSetup) -> Iterator[None]:
    """One update step at a time per data directory, across processes (appliance and CLI)."""
    try:
        with exclusively(setup.data_dir / "state" / "updates.lock"):
            yield
    except LockBusyError:
        raise ConflictError(
            "Another update step (a check, download or bundle import) is running on this "
            "appliance; try again when it has finished."
        ) from None


def check(uow: UnitOfWork, setup: UpdateSetup, actor: Actor) -> list[ReleaseRow]:
    """Ask the update service (R21); record what it offered."""
    url = in_effect(uow, setup).service_url
    with _step(uow, actor, "updates.check", url or setup.site, online=True), _exclusive(setup):
        found = client(uow, setup).check(installed_versions(uow, setup.data_dir))
    rows = _rows(setup, found)
    audit.record(uow, actor, "updates.check", url, offered={r.name: r.state for r in rows})
    return rows


def _find(statuses: list[uc.ReleaseStatus], name: str) -> uc.ReleaseStatus:
    wanted = " ".join(name.split())
    found = next((s for s in statuses if s.release.name == wanted), None)
    if found is None:
        raise NotFoundError(
            f"{name!r} is not among the releases offered to this appliance; check for updates."
        )
    return found


@dataclass(frozen=True)
class Downloaded:
    row: ReleaseRow
    path: Path
    seconds: float


def download(
    uow: UnitOfWork, setup: UpdateSetup, actor: Actor, name: str, progress: Progress | None = None
) -> Downloaded:
    """Fetch one release and verify it; it waits in storage, marked downloaded and verified."""
    started = time.monotonic()
    with _step(uow, actor, "updates.download", name, online=True), _exclusive(setup):
        updater = client(uow, setup)
        status = _find(updater.check(installed_versions(uow, setup.data_dir)), name)
        if status.assessment.state not in (ReleaseState.INSTALLABLE, ReleaseState.BLOCKED):
            raise ConflictError(f"{status.release.name} is {status.assessment.reason}.")
        path = updater.download(status, progress)
    seconds = time.monotonic() - started
    row = _row(setup, status, rolled_back_releases(setup))
    audit.record(
        uow,
        actor,
        "updates.download",
        row.name,
        bytes=row.length,
        sha256=path.name,
        seconds=round(seconds, 3),
    )
    return Downloaded(row, path, seconds)


@dataclass(frozen=True)
class BundleImport:
    """What an offline bundle brought, in release names."""

    label: str
    rows: list[ReleaseRow]
    stored: list[str]
    """Stored now."""
    held: list[str]
    """Held already; the bundle's copies verified all the same."""
    imported_before: str | None
    """When this very bundle (the answer to one download key) was imported before."""

    @property
    def summary(self) -> str:
        """What the page and the console say."""
        text = f"Bundle {self.label} verified"
        if self.imported_before:
            at = self.imported_before[:16].replace("T", " ")
            text += f"; this same bundle was already imported on {at} UTC"
        text += f"; stored: {', '.join(self.stored)}" if self.stored else "; nothing new stored"
        if self.held:
            text += f"; already stored before: {', '.join(self.held)}"
        return text + "."


def import_bundle(
    uow: UnitOfWork, setup: UpdateSetup, actor: Actor, bundle: Path, label: str
) -> BundleImport:
    """Verify an offline bundle exactly as a download, every package it carries included,
    and store its releases (R24). Importing the same bundle again is said so."""
    with _step(uow, actor, "updates.import_bundle", label, online=False), _exclusive(setup):
        found = client(uow, setup, online=False).import_bundle(
            bundle, installed_versions(uow, setup.data_dir)
        )
    names = {s.target.hashes["sha256"]: s.release.name for s in found.statuses}
    result = BundleImport(
        label,
        _rows(setup, found.statuses),
        [names.get(sha, sha[:12]) for sha in found.stored],
        [names.get(sha, sha[:12]) for sha in found.held],
        _remember_import(uow, found.download_key),
    )
    audit.record(
        uow,
        actor,
        "updates.import_bundle",
        label,
        bytes=bundle.stat().st_size,
        stored=result.stored,
        already_stored=result.held,
        imported_before=result.imported_before,
    )
    return result


def _remember_import(uow: UnitOfWork, download_key: str) -> str | None:
    """When the bundle answering `download_key` was imported before, if it was; remembers
    this import (the last IMPORTS_KEPT)."""
    stored = uow.settings.get(IMPORTED_SETTING)
    seen: dict[str, str] = dict(stored) if isinstance(stored, dict) else {}
    key = hashlib.sha256(download_key.encode()).hexdigest()
    before = seen.pop(key, None)
    seen[key] = utc_now().isoformat()
    uow.settings.set(IMPORTED_SETTING, dict(list(seen.items())[-IMPORTS_KEPT:]))
    return before


@dataclass(frozen=True)
class DownloadKey:
    text: str
    made_at: datetime
    installed: dict[str, str]


def download_key(uow: UnitOfWork, setup: UpdateSetup, actor: Actor) -> DownloadKey:
    """A new Appliance Download Key: site, appliance, installed versions, clock; signed."""
    installed, now = installed_versions(uow, setup.data_dir), utc_now()
    text = client(uow, setup, online=False).make_download_key(installed, now)
    versions = {k.value: str(v) for k, v in installed.items()}
    audit.record(uow, actor, "updates.download_key", setup.site, installed=versions)
    return DownloadKey(text, now, versions)


def install_license(uow: UnitOfWork, setup: UpdateSetup, actor: Actor, name: str) -> License:
    """Apply a license add-on at once: the licensed counts change without a restart."""
    with _step(uow, actor, "updates.install_license", name, online=False):
        status = _installable_license(uow, setup, name)
    counts = status.info.licensed
    lic = License(
        str(status.release.version),
        counts["representatives"],
        counts["endpoints"],
        utc_now().isoformat(),
    )
    uow.settings.set(LICENSE_SETTING, lic.__dict__)
    audit.record(uow, actor, "updates.install_license", status.release.name, licensed=counts)
    return lic


def _installable_license(uow: UnitOfWork, setup: UpdateSetup, name: str) -> uc.ReleaseStatus:
    status = _find(_known(setup, uow), name)
    if status.release.kind is not ReleaseKind.LICENSE:
        raise InvalidInputError(
            f"{status.release.name} is not a license add-on; base and site releases are "
            "installed by the software update, not here."
        )
    if status.assessment.state is ReleaseState.BLOCKED:
        needs = ", ".join(str(r) for r in status.assessment.missing)
        raise UpdateDependencyError(
            f"A required release is missing: {status.release.name} needs {needs}."
        )
    if status.assessment.state is not ReleaseState.INSTALLABLE:
        raise ConflictError(f"{status.release.name} is {status.assessment.reason}.")
    if not (setup.packages_dir / status.target.hashes["sha256"]).is_file():
        raise ConflictError(
            f"{status.release.name} is not downloaded yet: download it (or upload a bundle "
            "holding it) first; it is verified on the way in."
        )
    return status
