"""Installs' rules: which releases ask for a licence agreement, how long an install takes,
and how long changes are paused during one (R4, R5). No I/O."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.releases.versions import ReleaseKind, Version


def needs_licence(installed: Version | None, target: Version) -> bool:
    """A new major version asks the administrator to accept its licence agreement."""
    return installed is None or target.parts[0] > installed.parts[0]


@dataclass(frozen=True)
class Estimate:
    """How long an install should take, from what is stored (R4)."""

    seconds: float
    database_bytes: int
    package_bytes: int
    paused_seconds: float = 0.0
    """Of `seconds`: changes are paused (the snapshot, migrations, the switch)."""
    watched_seconds: float = 0.0
    """Of `seconds`: the new version is watched through its first minute (the probation)."""

    @property
    def breakdown(self) -> str:
        """What the seconds are made of, as the page and the console say it."""
        switch = round(self.seconds - self.watched_seconds, 1)
        words = f"about {switch:g} s to install and switch over"
        if self.paused_seconds:
            words += f" (changes are paused for about {self.paused_seconds:g} s)"
        if self.watched_seconds:
            words += f", then {self.watched_seconds:g} s watching the new version"
        return words

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(
            round(self.seconds + other.seconds, 1),
            max(self.database_bytes, other.database_bytes),
            self.package_bytes + other.package_bytes,
            round(self.paused_seconds + other.paused_seconds, 1),
            round(self.watched_seconds + other.watched_seconds, 1),
        )


# Rates and times measured on a loaded 2-core machine (bench/bench_install.py); cautious.
UNPACK_BYTES_PER_SECOND = 20e6
SNAPSHOT_BYTES_PER_SECOND = 150e6
WORKER_START_SECONDS = 8.0
"""A new worker (and its migration tool) imports its code before changes are paused."""
PAUSE_SECONDS = 0.5
"""Changes are paused this long with an empty database: migrations, the new worker's start
and health check, the switch."""
DRAIN_SECONDS = 1.5
"""The old worker finishes its requests after the switch."""
BASE_SWITCH_SECONDS = 4.0
"""A new base is tried, then the supervisor re-executes and confirms the worker serves."""


def pause_seconds(database_bytes: int) -> float:
    """How long changes are paused in a site install: the snapshot and the migrations grow
    with the database."""
    return PAUSE_SECONDS + 2 * database_bytes / SNAPSHOT_BYTES_PER_SECOND


def estimate(
    kind: ReleaseKind, database_bytes: int, package_bytes: int, probation_seconds: float = 0.0
) -> Estimate:
    """Unpacking grows with the package; a site release's pause with the database, and its
    install ends only once the new version has been watched through its probation."""
    unpack = package_bytes / UNPACK_BYTES_PER_SECOND
    if kind is not ReleaseKind.SITE:
        seconds = unpack + BASE_SWITCH_SECONDS
        return Estimate(round(seconds, 1), database_bytes, package_bytes)
    paused = pause_seconds(database_bytes)
    seconds = unpack + WORKER_START_SECONDS + paused + DRAIN_SECONDS + probation_seconds
    return Estimate(
        round(seconds, 1), database_bytes, package_bytes, round(paused, 1), probation_seconds
    )
