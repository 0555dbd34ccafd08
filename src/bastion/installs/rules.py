"""Installs' rules: which releases ask for a licence agreement, and how long an install
should take (R4). No I/O."""

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


# Rates measured on a 2-core machine (bench/bench_install.py); deliberately cautious.
UNPACK_BYTES_PER_SECOND = 20e6
SNAPSHOT_BYTES_PER_SECOND = 150e6
WORKER_START_SECONDS = 3.0
SWITCH_SECONDS = 1.0


def estimate(kind: ReleaseKind, database_bytes: int, package_bytes: int) -> Estimate:
    """Unpacking grows with the package, the snapshot and migrations with the database."""
    seconds = package_bytes / UNPACK_BYTES_PER_SECOND + WORKER_START_SECONDS + SWITCH_SECONDS
    if kind is ReleaseKind.SITE:
        seconds += 2 * database_bytes / SNAPSHOT_BYTES_PER_SECOND
    return Estimate(round(seconds, 1), database_bytes, package_bytes)
