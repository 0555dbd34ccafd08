"""Jump Clients' rules: what an installer may say, when one is refused, what state a
client is in, and the site's Jump Client settings. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from hashlib import sha256

from bastion.releases.versions import VersionError, parse_version

MIN_VALIDITY_MINUTES = 10
MAX_VALIDITY_MINUTES = 525_600
DEFAULT_VALIDITY_MINUTES = 1_440
MAX_LABEL = 100
MAX_NAME = 200
MAX_COMMENTS = 1_000


class JumpClientError(Exception):
    """A Jump Client request was refused; the message says why and what to do."""


class Mode(StrEnum):
    ACTIVE = "active"
    PASSIVE = "passive"


class Status(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    LOST = "lost"
    UPGRADE_PENDING = "upgrade pending"
    UPGRADING = "upgrading"
    FAILED = "failed"
    REVOKED = "revoked"
    UNINSTALLING = "uninstalling"


def parse_mode(text: str) -> Mode:
    try:
        return Mode(text.strip().lower())
    except ValueError:
        raise JumpClientError(f"{text!r} is not a mode; choose active or passive.") from None


KINDS = ("jump_client", "jumpoint")


def parse_kind(text: str) -> str:
    """What an installer installs: a Jump Client, or a Jumpoint."""
    kind = text.strip().lower().replace("-", "_")
    if kind not in KINDS:
        raise JumpClientError(f"{text!r} is not a kind of client; choose jump_client or jumpoint.")
    return kind


def check_validity(minutes: int) -> timedelta:
    if not MIN_VALIDITY_MINUTES <= minutes <= MAX_VALIDITY_MINUTES:
        raise JumpClientError(
            f"An installer is valid for {MIN_VALIDITY_MINUTES} to {MAX_VALIDITY_MINUTES:,} "
            f"minutes (a year); {minutes:,} is outside that."
        )
    return timedelta(minutes=minutes)


def clean_label(what: str, text: str, limit: int = MAX_LABEL) -> str:
    """A Jump Group, tag or name: trimmed, printable, at most `limit` characters."""
    cleaned = " ".join(text.split())
    if len(cleaned) > limit:
        raise JumpClientError(f"The {what} has {len(cleaned)} characters; use at most {limit}.")
    if any(not ch.isprintable() for ch in cleaned):
        raise JumpClientError(f"The {what} holds a control character; use printable text.")
    return cleaned


def clean_comments(text: str) -> str:
    cleaned = text.strip()
    if len(cleaned) > MAX_COMMENTS:
        raise JumpClientError(f"Comments have at most {MAX_COMMENTS:,} characters.")
    return cleaned


@dataclass(frozen=True)
class InstallerClaims:
    """What an installer file says it installs; checked against what the site issued."""

    site: str
    site_version: str
    mode: str
    jump_group: str
    tag: str
    kind: str = "jump_client"


@dataclass(frozen=True)
class IssuedInstaller:
    """What the site recorded when it made the installer."""

    claims: InstallerClaims
    expires_at: datetime
    revoked: bool


def installer_refusal(
    issued: IssuedInstaller | None, claims: InstallerClaims, site: str, version: str, now: datetime
) -> str | None:
    """Why a client may not register with this installer, or None if it may."""
    if claims.site != site:
        return (
            f"This installer was made for the site {claims.site!r}, not {site!r}: "
            "download an installer from this site."
        )
    if issued is None:
        return "This site never made this installer (or it was deleted): make a new one."
    if issued.revoked:
        return "This installer was revoked by an administrator: make a new one."
    if claims != issued.claims:
        return "This installer was altered after the site made it: download a new one."
    if now >= issued.expires_at:
        return f"This installer expired at {issued.expires_at:%Y-%m-%d %H:%M} UTC: make a new one."
    if claims.site_version != version and not is_newer(claims.site_version, version):
        return (
            f"This installer was made for site version {claims.site_version}, and the site now "
            f"runs {version}: its clients would be out of date. Make a new installer."
        )
    return None


def is_newer(version: str, than: str) -> bool:
    """Is `version` a later site version than `than`? (False if either is not a version.)"""
    try:
        return parse_version(than) < parse_version(version)
    except VersionError:
        return False


def not_yet(claims: InstallerClaims, version: str) -> str | None:
    """Why an installer the site made for a later version of itself cannot register yet:
    its clients wait, offline, until the site runs that version (R11)."""
    if not is_newer(claims.site_version, version):
        return None
    return (
        f"This installer is for site version {claims.site_version}, and the site still runs "
        f"{version}: the client waits, offline, and registers once the site runs "
        f"{claims.site_version}."
    )


@dataclass(frozen=True)
class ClientState:
    """What the list needs to say how a client is."""

    online: bool
    last_seen_at: datetime | None
    installed_at: datetime
    revoked: bool
    uninstall_requested: bool
    version: str
    upgrade_state: str = ""
    """Of the upgrade to the site's version: "", "upgrading", "failed" or "done"."""


def status_of(
    state: ClientState, site_version: str, lost_after: timedelta, now: datetime
) -> Status:
    if state.revoked:
        return Status.REVOKED
    if state.uninstall_requested:
        return Status.UNINSTALLING
    if state.version != site_version:
        return _waiting(state.upgrade_state)
    if state.online:
        return Status.ONLINE
    seen = state.last_seen_at or state.installed_at
    return Status.LOST if now - seen > lost_after else Status.OFFLINE


def _waiting(upgrade_state: str) -> Status:
    if upgrade_state == "upgrading":
        return Status.UPGRADING
    if upgrade_state == "failed":
        return Status.FAILED
    return Status.UPGRADE_PENDING


# -- fleet upgrades ----------------------------------------------------------------------

HALT_SAMPLE = 20
"""A rollout halts on the failure rate of the last this many finished upgrades..."""
HALT_MINIMUM = 5
"""... once at least this many have finished."""


def is_canary(client_id: str, percent: int) -> bool:
    """Whether a client is among the canaries: a stable share of the fleet, by id."""
    if percent <= 0 or percent >= 100:  # no hashing: the rollout asks for every client
        return percent >= 100
    bucket = int.from_bytes(sha256(client_id.encode()).digest()[:4], "big") % 100
    return bucket < percent


@dataclass(frozen=True)
class Waiting:
    """A client that could upgrade now (online, out of date, not failed at this version)."""

    row_id: int
    client_id: str
    first: bool
    """Someone tried to jump to it: it goes first."""
    canary: bool


def next_upgrades(
    waiting: list[Waiting], upgrading: int, cap: int, canaries_waiting: int
) -> list[Waiting]:
    """Which clients start upgrading now: those asked for first, then canaries, then the
    rest once no canary waits; never more than `cap` upgrading at once."""
    free = max(0, cap - upgrading)
    ordered = sorted(waiting, key=lambda w: (not w.first, not w.canary, w.row_id))
    if canaries_waiting:
        ordered = [w for w in ordered if w.first or w.canary]
    return ordered[:free]


def halt_reason(recent: list[bool], failure_percent: int, fleet: int) -> str | None:
    """Why a rollout should stop, from recent outcomes (True: upgraded), newest last; a
    fleet smaller than the usual sample is judged on all of it."""
    sample = recent[-HALT_SAMPLE:]
    if len(sample) < min(HALT_MINIMUM, max(1, fleet)):
        return None
    failed = sample.count(False)
    if failed * 100 > failure_percent * len(sample):
        return (
            f"{failed} of the last {len(sample)} Jump Client upgrades failed, more than the "
            f"{failure_percent}% the site allows; the rollout stopped. Look at the failed "
            "clients, then resume it."
        )
    return None


@dataclass(frozen=True)
class FleetSettings:
    """The site's Jump Client settings (`/login > Jump > Jump Clients`)."""

    statistics_interval_seconds: int = 300
    lost_after_days: int = 30
    connection_rate: int = 50
    max_concurrent_upgrades: int = 20
    upgrade_bandwidth_mib: int = 100
    canary_percent: int = 5
    halt_failure_percent: int = 20


LIMITS: dict[str, tuple[int, int, str]] = {
    "statistics_interval_seconds": (10, 86_400, "The statistics interval"),
    "lost_after_days": (1, 3_650, "Lost after (days)"),
    "connection_rate": (1, 300, "The connection rate (clients a second)"),
    "max_concurrent_upgrades": (1, 500, "The Maximum Number of Concurrent Jump Client Upgrades"),
    "upgrade_bandwidth_mib": (1, 100, "The upgrade bandwidth (MiB/s)"),
    "canary_percent": (0, 100, "The canary share (%)"),
    "halt_failure_percent": (1, 100, "The failure rate that halts a rollout (%)"),
}


def check_settings(settings: FleetSettings) -> FleetSettings:
    for field in fields(settings):
        low, high, what = LIMITS[field.name]
        value = getattr(settings, field.name)
        if not low <= value <= high:
            raise JumpClientError(f"{what} is {low} to {high:,}; {value:,} is outside that.")
    return settings


def still_trusted(client_anchors: Iterable[str], release_anchors: Iterable[str]) -> bool:
    """Whether a client would accept a site whose chain leads to one of `release_anchors`
    (a client that never reported its anchors cannot be counted on)."""
    return not set(client_anchors).isdisjoint(release_anchors)
