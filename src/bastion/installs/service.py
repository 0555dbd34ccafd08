"""Installing base and site releases (R4, R5, R21, R22): plan, licence, submit, follow.

The supervisor (the base layer) carries installs out; this module decides what
may be installed and in which order, asks for the licence agreement of a new
major version, estimates how long it will take from what is stored, hands the
plan to the supervisor, and writes what happened to the audit log: the request,
the acceptance, the sessions ended at the switch, and each outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from bastion.accounts import sign_in
from bastion.installs.rules import Estimate, estimate, needs_licence
from bastion.jump_clients.upgrades import TrustPreflight, trust_preflight
from bastion.platform import audit
from bastion.platform.errors import ConflictError, InvalidInputError, NotFoundError, ServiceError
from bastion.platform.principals import Actor, Principal, Role
from bastion.platform.unit_of_work import UnitOfWork
from bastion.releases import packages
from bastion.releases.versions import (
    DependencyError,
    ReleaseKind,
    ReleaseState,
    install_order,
)
from bastion.supervisor.journal import HistoryEntry, PlannedRelease, rolled_back
from bastion.supervisor.messages import Install, PendingInstall, SupervisorStatus
from bastion.supervisor.state import InstallState
from bastion.updates import service as updates
from bastion.updates.errors import UpdateDependencyError
from bastion.updates.service import ReleaseStatus

SUPERVISOR = Actor(Principal("appliance:supervisor", Role.ADMINISTRATOR), "appliance")
AUDITED_SETTING = "updates.audited_installs"
SLOT_KINDS = (ReleaseKind.BASE, ReleaseKind.SITE)


class Supervisor(Protocol):
    """The base layer that runs the application and installs releases into slots."""

    def install(self, request: Install) -> PendingInstall: ...

    def cancel(self) -> bool: ...

    def status(self) -> SupervisorStatus: ...


@dataclass(frozen=True)
class InstallsSetup:
    """Where releases come from, who installs them, and what the estimate counts."""

    updates: updates.UpdateSetup
    supervisor: Supervisor
    database_size: Callable[[], int]
    probation_seconds: float = 0.0
    """How long the new version is watched after the switch (counted in the estimate)."""


class LicenceRequiredError(ConflictError):
    """A new major version's licence agreement must be accepted first."""

    def __init__(self, release: str, text: str) -> None:
        super().__init__(
            f"{release} is a new major version: read and accept its licence agreement "
            "to install it."
        )
        self.release = release
        self.text = text


class ClientsWouldGoOfflineError(ConflictError):
    """A site release built with other trust anchors would lose Jump Clients (R19)."""

    def __init__(self, release: str, check: TrustPreflight) -> None:
        super().__init__(
            f"{release} was built with other trust anchors: {check.offline:,} of "
            f"{check.total:,} Jump Clients do not trust them and would go offline after the "
            "install, unable to upgrade. Acknowledge that to install it (and reinstall those "
            "clients with a new installer afterwards), or install the release only once they "
            "trust its anchors."
        )
        self.release = release
        self.check = check


@dataclass(frozen=True)
class InstallPlan:
    releases: tuple[PlannedRelease, ...]
    estimate: Estimate
    licences: Mapping[str, str]
    """Release name -> licence text, for each new major version in the plan."""
    offline: Mapping[str, TrustPreflight] = field(default_factory=dict)
    """Release name -> the Jump Clients it would take offline, where it would (R19)."""

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.releases]


def plan(
    uow: UnitOfWork, installing: InstallsSetup, names: Iterable[str], retry: bool = False
) -> InstallPlan:
    """The releases to install, in dependency order, with the estimate and any licence.

    A release rolled back last time is refused unless `retry` says to install it again.
    """
    setup, database_bytes = installing.updates, installing.database_size()
    past = history(setup.data_dir)
    known = updates.known_statuses(uow, setup)
    installed = updates.installed_versions(uow, setup.data_dir)
    chosen = [_choose(known, name, setup, retry, past) for name in names]
    if not chosen:
        raise InvalidInputError("Choose at least one base or site release to install.")
    try:
        order = install_order(installed, [s.release for s in chosen])
    except DependencyError as error:
        raise UpdateDependencyError(f"{error}") from None
    by_release = {s.release: s for s in chosen}
    planned, licences, offline = [], {}, {}
    total = Estimate(0.0, database_bytes, 0)
    for item in order:
        status = by_release[item]
        package = setup.packages_dir / status.target.hashes["sha256"]
        planned.append(
            PlannedRelease(
                item.kind, item.version, str(package), tuple(str(r) for r in item.requires)
            )
        )
        length, probation = status.target.length, installing.probation_seconds
        total += estimate(item.kind, database_bytes, length, probation)
        if item.kind is ReleaseKind.SITE and needs_licence(installed.get(item.kind), item.version):
            licences[item.name] = packages.licence_text(package, item.version)
        if item.kind is ReleaseKind.SITE and status.info.anchors:
            check = trust_preflight(uow, status.info.anchors)
            if check.offline:
                offline[item.name] = check
    return InstallPlan(tuple(planned), total, licences, offline)


def _choose(
    known: list[ReleaseStatus],
    name: str,
    setup: updates.UpdateSetup,
    retry: bool,
    history: list[HistoryEntry],
) -> ReleaseStatus:
    wanted = " ".join(name.split())
    status = next((s for s in known if s.release.name == wanted), None)
    if status is None:
        raise NotFoundError(
            f"{name!r} is not among the releases this appliance knows; check for updates."
        )
    release = status.release
    if release.kind not in SLOT_KINDS:
        raise InvalidInputError(f"{release.name} is a license add-on: install it from its row.")
    if status.assessment.state not in (ReleaseState.INSTALLABLE, ReleaseState.BLOCKED):
        raise ConflictError(f"{release.name} is {status.assessment.reason}.")
    if not (setup.packages_dir / status.target.hashes["sha256"]).is_file():
        raise ConflictError(
            f"{release.name} is not downloaded yet: download it (or upload a bundle holding "
            "it) first; it is verified on the way in."
        )
    if release.name in rolled_back(history) and not retry:
        reason = next(e.reason for e in reversed(history) if e.release == release.name)
        raise ConflictError(
            f"{release.name} was rolled back ({reason}); it is not installed again unless "
            "you ask for it explicitly (retry)."
        )
    return status


def installable(uow: UnitOfWork, setup: updates.UpdateSetup) -> dict[str, list[str]]:
    """Base and site releases that can be installed now or together with the releases
    they wait for: release name -> those releases (installed first, in the same action)."""
    found = {}
    for status in updates.known_statuses(uow, setup):
        if status.release.kind in SLOT_KINDS and status.assessment.resolvable:
            found[status.release.name] = [r.name for r in status.assessment.blocked_by]
    return found


def held_site_versions(uow: UnitOfWork, setup: updates.UpdateSetup) -> dict[str, Path]:
    """Site releases later than the running one that this appliance holds, verified and
    ready to install (not rolled back): version -> package. Installers can be made for
    them before their install (R11). An update channel that cannot be read offers none."""
    try:
        known = updates.known_statuses(uow, setup)
    except ServiceError:
        return {}
    rolled = updates.rolled_back_releases(setup)
    held = {}
    for status in known:
        release = status.release
        package = setup.packages_dir / status.target.hashes["sha256"]
        if (
            release.kind is ReleaseKind.SITE
            and status.assessment.state in (ReleaseState.INSTALLABLE, ReleaseState.BLOCKED)
            and release.name not in rolled
            and package.is_file()
        ):
            held[str(release.version)] = package
    return held


def submit(
    uow: UnitOfWork,
    installing: InstallsSetup,
    actor: Actor,
    chosen: InstallPlan,
    accepted_licence: bool,
    not_before: datetime | None = None,
    accepted_offline: bool = False,
) -> PendingInstall:
    """Hand the plan to the supervisor; it starts at `not_before` (now if None).

    Jump Clients a release would take offline must be acknowledged, then a new major
    version's licence accepted."""
    if chosen.offline and not accepted_offline:
        raise ClientsWouldGoOfflineError(*next(iter(chosen.offline.items())))
    if chosen.licences and not accepted_licence:
        name, text = next(iter(chosen.licences.items()))
        raise LicenceRequiredError(name, text)
    if not_before is not None and not_before.tzinfo is None:
        raise InvalidInputError("Give the install time with its time zone (UTC).")
    answer = installing.supervisor.install(
        Install(
            chosen.releases,
            not_before.isoformat(timespec="seconds") if not_before else None,
            actor.name,
            chosen.estimate.seconds,
        )
    )
    for name, check in chosen.offline.items():
        audit.record(
            uow, actor, "updates.offline_clients_acknowledged", name, clients=check.offline
        )
    for name in chosen.licences:
        audit.record(uow, actor, "updates.licence_accepted", name)
    audit.record(
        uow,
        actor,
        "updates.install.requested",
        ", ".join(chosen.names),
        not_before=answer.not_before,
        estimate_seconds=chosen.estimate.seconds,
    )
    return answer


def cancel(uow: UnitOfWork, installing: InstallsSetup, actor: Actor) -> None:
    if not installing.supervisor.cancel():
        raise ConflictError("No install is scheduled.")
    audit.record(uow, actor, "updates.install.cancelled", "scheduled install")


def end_sessions_at_switch(uow: UnitOfWork, release: str) -> int:
    """At the switch every signed-in user is signed out, told why on the next request (R5)."""
    return sign_in.end_sessions_for_update(uow, release, SUPERVISOR)


def audit_outcomes(uow: UnitOfWork, history: list[HistoryEntry]) -> int:
    """Write each install outcome the supervisor recorded to the audit log, once."""
    stored = uow.settings.get(AUDITED_SETTING)
    done = set(stored) if isinstance(stored, list) else set()
    fresh = [e for e in history if e.install_id not in done]
    for entry in fresh:
        action = "updates.install." + entry.outcome.value.replace(" ", "_")
        audit.record(uow, SUPERVISOR, action, entry.release, reason=entry.reason, **entry.details)
    if fresh:
        kept = [e.install_id for e in history]
        uow.settings.set(AUDITED_SETTING, kept)
    return len(fresh)


def last_rollback(history: list[HistoryEntry]) -> HistoryEntry | None:
    """The last install that was rolled back, for Status > Basics."""
    return next((e for e in reversed(history) if e.outcome.value == "rolled back"), None)


def history(data_dir: Path) -> list[HistoryEntry]:
    return InstallState(data_dir).history()


def pending(data_dir: Path) -> PendingInstall | None:
    """The install requested but not begun yet, for the banner users see (R5)."""
    return InstallState(data_dir).pending()
