"""Installing base and site releases: the recorded steps and recovery after a crash.

An install is a sequence of steps, each recorded in the install journal once it
is done. Whatever stops the appliance (a crash, `kill -9`, a power loss), the
next start reads the journal and `recovery` says what brings the appliance back
to one consistent version: before the switch, back to the old slot (and the
database snapshot, once migrations may have begun); after it, the new version
stays. The supervisor carries the decisions out; this module holds no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from bastion.releases.versions import ReleaseKind, Version, VersionError, parse_kind, parse_version


class InstallError(Exception):
    """An install request is not well formed or cannot be carried out."""


class Step(StrEnum):
    """Install steps; a journal records the last one done."""

    PLANNED = "planned"
    UNPACKED = "unpacked"
    # site releases
    STARTED = "started"
    FROZEN = "frozen"
    SNAPSHOT = "snapshot"
    MIGRATED = "migrated"
    HEALTHY = "healthy"
    # both kinds
    SWITCHED = "switched"
    # site: the old worker has stopped; base: the new supervisor runs and confirmed
    DRAINED = "drained"
    PROBED = "probed"
    CONFIRMED = "confirmed"


SITE_STEPS = (
    Step.PLANNED,
    Step.UNPACKED,
    Step.STARTED,
    Step.FROZEN,
    Step.SNAPSHOT,
    Step.MIGRATED,
    Step.HEALTHY,
    Step.SWITCHED,
    Step.DRAINED,
)
BASE_STEPS = (Step.PLANNED, Step.UNPACKED, Step.PROBED, Step.SWITCHED, Step.CONFIRMED)

STEP_TEXT = {
    Step.PLANNED: "planned",
    Step.UNPACKED: "unpacking the release and installing its wheels into a new slot",
    Step.FROZEN: "pausing changes on the running version",
    Step.SNAPSHOT: "taking a database snapshot",
    Step.MIGRATED: "migrating the database",
    Step.STARTED: "starting the new version (it waits to be told to begin)",
    Step.HEALTHY: "waiting for the new version's health check",
    Step.SWITCHED: "switching to the new version",
    Step.DRAINED: "letting the old version finish its requests",
    Step.PROBED: "trying the new base",
    Step.CONFIRMED: "restarting the supervisor from the new base",
}


def steps_of(kind: ReleaseKind) -> tuple[Step, ...]:
    if kind is ReleaseKind.BASE:
        return BASE_STEPS
    if kind is ReleaseKind.SITE:
        return SITE_STEPS
    raise InstallError(f"a {kind.value} release is not installed into a slot")


def slot_name(kind: ReleaseKind, version: Version) -> str:
    """The directory under `releases/` that holds one installed release."""
    return f"{kind.value}-{version}"


@dataclass(frozen=True)
class PlannedRelease:
    """One release to install: what it is and where its verified package is."""

    kind: ReleaseKind
    version: Version
    package: str
    requires: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.kind.value} {self.version}"

    @property
    def slot(self) -> str:
        return slot_name(self.kind, self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "version": str(self.version),
            "package": self.package,
            "requires": list(self.requires),
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> PlannedRelease:
        try:
            return cls(
                parse_kind(str(body["kind"])),
                parse_version(str(body["version"])),
                str(body["package"]),
                tuple(str(r) for r in body.get("requires", [])),
            )
        except (KeyError, TypeError, VersionError) as error:
            raise InstallError(f"an install entry is not well formed: {error}") from None


@dataclass(frozen=True)
class Journal:
    """The install in progress: the release, the slots involved and the last step done."""

    install_id: str
    release: PlannedRelease
    from_slot: str
    previous_before: str | None
    started_at: str
    step: Step = Step.PLANNED
    rollback: str | None = None
    """Set once a rollback has begun, with its reason; a restart finishes it."""
    queue: tuple[PlannedRelease, ...] = ()
    """Releases to install after this one, in order."""
    snapshot: str | None = None

    def __post_init__(self) -> None:
        if self.step not in steps_of(self.release.kind):
            raise InstallError(f"{self.step} is not a step of a {self.release.kind.value} install")

    def done(self, step: Step) -> Journal:
        order = steps_of(self.release.kind)
        if order.index(step) < order.index(self.step):
            raise InstallError(f"step {step} comes before {self.step}")
        return replace(self, step=step)

    def reached(self, step: Step) -> bool:
        order = steps_of(self.release.kind)
        return order.index(self.step) >= order.index(step)

    def rolling_back(self, reason: str) -> Journal:
        return replace(self, rollback=self.rollback or reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "install_id": self.install_id,
            "release": self.release.to_dict(),
            "from_slot": self.from_slot,
            "previous_before": self.previous_before,
            "started_at": self.started_at,
            "step": self.step.value,
            "rollback": self.rollback,
            "queue": [r.to_dict() for r in self.queue],
            "snapshot": self.snapshot,
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Journal:
        try:
            return cls(
                install_id=str(body["install_id"]),
                release=PlannedRelease.from_dict(body["release"]),
                from_slot=str(body["from_slot"]),
                previous_before=body.get("previous_before"),
                started_at=str(body["started_at"]),
                step=Step(body["step"]),
                rollback=body.get("rollback"),
                queue=tuple(PlannedRelease.from_dict(r) for r in body.get("queue", [])),
                snapshot=body.get("snapshot"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InstallError(f"the install journal is not well formed: {error}") from None


class Outcome(StrEnum):
    INSTALLED = "installed"
    ROLLED_BACK = "rolled back"


@dataclass(frozen=True)
class Recovery:
    """What a start must do with a journal it finds."""

    outcome: Outcome
    reason: str
    restore_database: bool = False

    @property
    def rolls_back(self) -> bool:
        return self.outcome is Outcome.ROLLED_BACK


def recovery(journal: Journal) -> Recovery:
    """Finish or undo an install the appliance stopped in the middle of."""
    kind = journal.release.kind
    restore = kind is ReleaseKind.SITE and journal.reached(Step.SNAPSHOT)
    if journal.rollback is not None:
        return Recovery(Outcome.ROLLED_BACK, journal.rollback, restore)
    if kind is ReleaseKind.SITE and journal.reached(Step.SWITCHED):
        return Recovery(Outcome.INSTALLED, "the appliance restarted after the switch")
    if kind is ReleaseKind.BASE and journal.reached(Step.CONFIRMED):
        return Recovery(Outcome.INSTALLED, "the appliance restarted after the new base confirmed")
    if kind is ReleaseKind.BASE and journal.reached(Step.SWITCHED):
        reason = "the new base was switched to but did not confirm that it runs"
        return Recovery(Outcome.ROLLED_BACK, reason)
    reason = f"the install was interrupted after step '{journal.step}' (the appliance stopped)"
    return Recovery(Outcome.ROLLED_BACK, reason, restore)


def progress(journal: Journal) -> tuple[int, int]:
    """Steps done and steps in all, for a progress bar."""
    order = steps_of(journal.release.kind)
    return order.index(journal.step) + 1, len(order)


@dataclass(frozen=True)
class HistoryEntry:
    """One finished install, as Status > Basics and the Updates page show it."""

    install_id: str
    release: str
    outcome: Outcome
    reason: str
    at: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "install_id": self.install_id,
            "release": self.release,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "at": self.at,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> HistoryEntry:
        return cls(
            str(body["install_id"]),
            str(body["release"]),
            Outcome(body["outcome"]),
            str(body["reason"]),
            str(body["at"]),
            dict(body.get("details", {})),
        )


def rolled_back(history: list[HistoryEntry]) -> set[str]:
    """Releases whose last install was rolled back: never retried automatically."""
    last: dict[str, Outcome] = {}
    for entry in history:
        last[entry.release] = entry.outcome
    return {name for name, outcome in last.items() if outcome is Outcome.ROLLED_BACK}
