"""Release versions, kinds and dependency resolution.

A release is one version of a package kind (base, site, license, client).
Given what an appliance has installed and what the update service offers,
``assess`` says for each release whether it can be installed now, is blocked
(and by which missing release), is already installed, was already taken, or
is lower than what is installed (never offered). ``install_order`` sorts
several pending releases so that each one's requirements are met before it
is installed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import total_ordering

_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")
_REQUIREMENT = re.compile(r"^\s*(?P<kind>[a-z]+)\s*>=\s*(?P<version>[0-9.]+)\s*$")


class VersionError(ValueError):
    """A version or requirement string is not well formed."""


class DependencyError(Exception):
    """A release cannot be installed because a release it requires is missing."""


class ReleaseKind(StrEnum):
    """The four package kinds, in the order they are installed."""

    BASE = "base"
    SITE = "site"
    LICENSE = "license"
    CLIENT = "client"

    @property
    def rank(self) -> int:
        return list(ReleaseKind).index(self)

    @property
    def is_site_specific(self) -> bool:
        return self is not ReleaseKind.BASE


def parse_kind(text: str) -> ReleaseKind:
    try:
        return ReleaseKind(text.strip().lower())
    except ValueError:
        kinds = ", ".join(k.value for k in ReleaseKind)
        raise VersionError(f"unknown release kind {text!r}: expected one of {kinds}") from None


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A dotted numeric version; trailing zeros do not matter (1.1 == 1.1.0)."""

    parts: tuple[int, ...]
    _key: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts = list(self.parts)
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        object.__setattr__(self, "_key", tuple(parts))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __lt__(self, other: Version) -> bool:
        return self._key < other._key

    def __str__(self) -> str:
        return ".".join(str(p) for p in self.parts)


def parse_version(text: str) -> Version:
    """Parse "1.2.10" into a Version; raise VersionError if malformed."""
    cleaned = text.strip()
    if not _VERSION.match(cleaned):
        raise VersionError(f"version {text!r} is not of the form 1.2 or 1.2.3")
    return Version(tuple(int(p) for p in cleaned.split(".")))


@dataclass(frozen=True)
class Requirement:
    """The release needs ``kind`` installed at ``minimum`` or higher."""

    kind: ReleaseKind
    minimum: Version

    def is_met_by(self, installed: Mapping[ReleaseKind, Version]) -> bool:
        have = installed.get(self.kind)
        return have is not None and have >= self.minimum

    def __str__(self) -> str:
        return f"{self.kind.value}>={self.minimum}"


def parse_requirement(text: str) -> Requirement:
    """Parse "base>=1.1"."""
    match = _REQUIREMENT.match(text)
    if match is None:
        raise VersionError(f"requirement {text!r} is not of the form 'base>=1.1'")
    return Requirement(parse_kind(match["kind"]), parse_version(match["version"]))


@dataclass(frozen=True)
class Release:
    """One version of one package kind, possibly built for one site."""

    kind: ReleaseKind
    version: Version
    requires: tuple[Requirement, ...] = ()
    site: str | None = None

    @property
    def name(self) -> str:
        return f"{self.kind.value} {self.version}"

    def missing(self, installed: Mapping[ReleaseKind, Version]) -> tuple[Requirement, ...]:
        return tuple(r for r in self.requires if not r.is_met_by(installed))


class ReleaseState(StrEnum):
    INSTALLABLE = "installable"
    BLOCKED = "blocked"
    INSTALLED = "installed"
    TAKEN = "taken"
    LOWER_THAN_INSTALLED = "lower-than-installed"


@dataclass(frozen=True)
class Assessment:
    """What an appliance may do with one release, and why."""

    release: Release
    state: ReleaseState
    missing: tuple[Requirement, ...] = ()
    blocked_by: tuple[Release, ...] = field(default=())

    @property
    def offered(self) -> bool:
        return self.state in (ReleaseState.INSTALLABLE, ReleaseState.BLOCKED)

    @property
    def resolvable(self) -> bool:
        """Installable now, or once the available releases it waits for are installed."""
        if self.state is ReleaseState.INSTALLABLE:
            return True
        return self.state is ReleaseState.BLOCKED and len(self.blocked_by) == len(self.missing)

    @property
    def reason(self) -> str:
        if self.state is not ReleaseState.BLOCKED:
            return self.state.value
        needs = ", ".join(str(r) for r in self.missing)
        via = ", ".join(r.name for r in self.blocked_by)
        return f"blocked: needs {needs}" + (f" (install {via} first)" if via else "")


def _lowest_satisfying(requirement: Requirement, available: Iterable[Release]) -> Release | None:
    candidates = [
        r for r in available if r.kind is requirement.kind and r.version >= requirement.minimum
    ]
    return min(candidates, key=lambda r: r.version, default=None)


def assess_one(
    release: Release,
    installed: Mapping[ReleaseKind, Version],
    available: Iterable[Release] = (),
    taken: frozenset[Release] = frozenset(),
) -> Assessment:
    """Decide the state of one release for an appliance."""
    have = installed.get(release.kind)
    if have is not None and release.version == have:
        return Assessment(release, ReleaseState.INSTALLED)
    if have is not None and release.version < have:
        return Assessment(release, ReleaseState.LOWER_THAN_INSTALLED)
    if release in taken:
        return Assessment(release, ReleaseState.TAKEN)
    missing = release.missing(installed)
    if not missing:
        return Assessment(release, ReleaseState.INSTALLABLE)
    pool = list(available)
    found = (_lowest_satisfying(req, pool) for req in missing)
    blockers = tuple(r for r in found if r is not None)
    return Assessment(release, ReleaseState.BLOCKED, missing, blockers)


def assess(
    installed: Mapping[ReleaseKind, Version],
    available: Iterable[Release],
    taken: Iterable[Release] = (),
) -> list[Assessment]:
    """Assess every available release, sorted by kind then version."""
    pool = sorted(set(available), key=lambda r: (r.kind.rank, r.version))
    taken_set = frozenset(taken)
    return [assess_one(r, installed, pool, taken_set) for r in pool]


def offered(assessments: Iterable[Assessment]) -> list[Assessment]:
    """Only what is listed as available: installable or blocked."""
    return [a for a in assessments if a.offered]


def install_order(
    installed: Mapping[ReleaseKind, Version], pending: Iterable[Release]
) -> list[Release]:
    """Order pending releases so each one's requirements hold when it is installed.

    Releases are taken lowest kind rank and version first among those whose
    requirements are met by what is installed or already planned. Raise
    DependencyError naming what is missing if some release can never be
    installed.
    """
    state = dict(installed)
    remaining = sorted(set(pending), key=lambda r: (r.kind.rank, r.version))
    order: list[Release] = []
    while remaining:
        ready = next((r for r in remaining if not r.missing(state)), None)
        if ready is None:
            raise DependencyError(_describe_unmet(remaining, state))
        remaining.remove(ready)
        order.append(ready)
        state[ready.kind] = max(ready.version, state.get(ready.kind, ready.version))
    return order


def _describe_unmet(remaining: list[Release], state: Mapping[ReleaseKind, Version]) -> str:
    parts = [f"{r.name} needs {', '.join(str(m) for m in r.missing(state))}" for r in remaining]
    return "cannot install: " + "; ".join(parts) + ". Get the required release first."
