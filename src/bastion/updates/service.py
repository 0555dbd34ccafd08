"""`/appliance > Updates`: check, download, import offline bundles, install license add-ons.

Releases are read from the update service through the appliance's TUF client
(``adapters/update_client.py``) and verified there; this module decides what
an administrator may do with each release, keeps the installed versions and
the licensed counts, writes every step to the audit log, and turns the
client's failures into service errors that say which kind of failure it was
and what to do (R23). Base and site releases wait in storage once downloaded;
a license add-on changes the licensed counts at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bastion.platform import audit, build, identity
from bastion.platform.clock import utc_now
from bastion.platform.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ServiceError,
    UnavailableError,
)
from bastion.platform.files import LockBusyError, exclusively
from bastion.platform.principals import Actor
from bastion.platform.settings import ApplianceSettings
from bastion.platform.unit_of_work import UnitOfWork
from bastion.releases.versions import (
    ReleaseKind,
    ReleaseState,
    Version,
    VersionError,
    parse_version,
)
from bastion.supervisor import slots
from bastion.updates import client as uc
from bastion.updates.appliance_key import ensure_appliance_key, public_key_of
from bastion.updates.client import ReleaseStatus as ReleaseStatus  # part of this service's face
from bastion.updates.errors import (
    MANUAL_INSTALLATION,
    UpdateDependencyError,
    UpdatesNotConfiguredError,
    failure_of,
)
from bastion.updates.trusted_store import shipped_root

LICENSE_SETTING = "updates.license"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class UpdateSetup:
    """Where this appliance keeps update state and whom it asks for releases."""

    data_dir: Path
    service_url: str
    site: str
    trusted_root: Path | None

    @classmethod
    def from_settings(cls, settings: ApplianceSettings) -> UpdateSetup:
        site = settings.update_site or settings.hostname
        url = settings.update_service_url.rstrip("/")
        return cls(settings.data_dir, url, site, settings.update_trusted_root)

    @property
    def key_file(self) -> Path:
        return self.data_dir / "state" / "update-key"

    @property
    def packages_dir(self) -> Path:
        return self.data_dir / "blobs" / "sha256"

    @property
    def tuf_dir(self) -> Path:
        return self.data_dir / "tuf"


def appliance_id(setup: UpdateSetup) -> str:
    try:
        return str((identity.read(setup.data_dir / "state") or {})["appliance_id"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UnavailableError(
            f"{setup.data_dir} holds no appliance identity yet: start the appliance once "
            "with `bastion appliance serve`."
        ) from None


def trusted_root(setup: UpdateSetup) -> bytes:
    """The vendor root shipped with the site build: the setting, else the package data."""
    if setup.trusted_root is not None:
        try:
            return setup.trusted_root.read_bytes()
        except OSError as error:
            raise UpdatesNotConfiguredError(
                f"The update trusted root {setup.trusted_root} cannot be read ({error}); "
                "check BASTION_UPDATE_TRUSTED_ROOT."
            ) from None
    shipped = shipped_root()
    if shipped is not None:
        return shipped
    raise UpdatesNotConfiguredError(
        "This site build carries no update trusted root: set BASTION_UPDATE_TRUSTED_ROOT to "
        "the root.json the vendor shipped with this site."
    )


def enrollment(setup: UpdateSetup) -> dict[str, str]:
    """What the vendor needs to enrol this appliance (`bastion release enroll-appliance`)."""
    key = ensure_appliance_key(setup.key_file)
    return {
        "site": setup.site,
        "appliance_id": appliance_id(setup),
        "public_key": public_key_of(key),
    }


NO_UPDATE_SERVICE = "No update service is configured (BASTION_UPDATE_SERVICE_URL)."


@dataclass(frozen=True)
class Readiness:
    """What this appliance's update settings allow, and in words why not where they do not."""

    no_update_service: str | None
    no_trusted_root: str | None

    @property
    def offline_refused(self) -> str | None:
        """Why bundles cannot be verified and download keys not made here, or None."""
        return self.no_trusted_root


def readiness(setup: UpdateSetup) -> Readiness:
    """Checked before offering the buttons, so that a button that cannot work says why."""
    try:
        trusted_root(setup)
    except UpdatesNotConfiguredError as error:
        root_problem: str | None = str(error)
    else:
        root_problem = None
    return Readiness(None if setup.service_url else NO_UPDATE_SERVICE, root_problem)


def client(setup: UpdateSetup, online: bool = True) -> uc.UpdateClient:
    if online and not setup.service_url:
        raise UpdatesNotConfiguredError(f"{NO_UPDATE_SERVICE} Use {MANUAL_INSTALLATION}")
    return uc.UpdateClient(
        setup.data_dir,
        setup.site,
        appliance_id(setup),
        trusted_root(setup),
        setup.service_url,
        ensure_appliance_key(setup.key_file),
    )


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
        return self.state in (ReleaseState.INSTALLABLE, ReleaseState.BLOCKED)

    @property
    def can_install(self) -> bool:
        return self.kind == ReleaseKind.LICENSE and self.state == ReleaseState.INSTALLABLE


def _row(setup: UpdateSetup, status: uc.ReleaseStatus) -> ReleaseRow:
    found = status.assessment
    stored = setup.packages_dir / status.target.hashes["sha256"]
    return ReleaseRow(
        name=status.release.name,
        kind=status.release.kind.value,
        version=str(status.release.version),
        state=found.state.value,
        reason=found.reason,
        length=status.target.length,
        downloaded=stored.is_file(),
        licensed=dict(status.info.licensed),
    )


def _known(setup: UpdateSetup, uow: UnitOfWork) -> list[uc.ReleaseStatus]:
    """Releases in the metadata this appliance verified last; no network."""
    if not (setup.tuf_dir / "targets.json").is_file():
        return []
    try:
        return uc.statuses(
            uc.read_targets(setup.tuf_dir), installed_versions(uow, setup.data_dir), setup.site
        )
    except uc.UpdateClientError as error:
        raise failure_of(error, online=False) from None


def known_statuses(uow: UnitOfWork, setup: UpdateSetup) -> list[uc.ReleaseStatus]:
    return _known(setup, uow)


def known_releases(uow: UnitOfWork, setup: UpdateSetup) -> list[ReleaseRow]:
    """The Available Updates table from the last verified check, download or bundle."""
    return [_row(setup, s) for s in _known(setup, uow) if _listed(s)]


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
    except uc.UpdateClientError as error:
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
    with (
        _step(uow, actor, "updates.check", setup.service_url or setup.site, online=True),
        _exclusive(setup),
    ):
        found = client(setup).check(installed_versions(uow, setup.data_dir))
    rows = [_row(setup, s) for s in found if _listed(s)]
    audit.record(
        uow, actor, "updates.check", setup.service_url, offered={r.name: r.state for r in rows}
    )
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
        updater = client(setup)
        status = _find(updater.check(installed_versions(uow, setup.data_dir)), name)
        if status.assessment.state not in (ReleaseState.INSTALLABLE, ReleaseState.BLOCKED):
            raise ConflictError(f"{status.release.name} is {status.assessment.reason}.")
        path = updater.download(status, progress)
    seconds = time.monotonic() - started
    row = _row(setup, status)
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


def import_bundle(
    uow: UnitOfWork, setup: UpdateSetup, actor: Actor, bundle: Path, label: str
) -> list[ReleaseRow]:
    """Verify an offline bundle exactly as a download and store its releases (R24)."""
    with _step(uow, actor, "updates.import_bundle", label, online=False), _exclusive(setup):
        found = client(setup, online=False).import_bundle(
            bundle, installed_versions(uow, setup.data_dir)
        )
    rows = [_row(setup, s) for s in found if _listed(s)]
    stored = [r.name for r in rows if r.downloaded]
    audit.record(
        uow, actor, "updates.import_bundle", label, bytes=bundle.stat().st_size, stored=stored
    )
    return rows


@dataclass(frozen=True)
class DownloadKey:
    text: str
    made_at: datetime
    installed: dict[str, str]


def download_key(uow: UnitOfWork, setup: UpdateSetup, actor: Actor) -> DownloadKey:
    """A new Appliance Download Key: site, appliance, installed versions, clock; signed."""
    installed, now = installed_versions(uow, setup.data_dir), utc_now()
    text = client(setup, online=False).make_download_key(installed, now)
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
