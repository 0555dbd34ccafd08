"""Fleet upgrades after a site install (R12-R14, R20): who upgrades next, when a rollout
halts, and how far the fleet has come.

A client of an older version waits (Upgrade Pending) until its turn: at most the site's
cap upgrade at once, those someone tried to jump to first, then a canary share of the
fleet, then the rest. A client that started must come back on the new version within
`UPGRADE_DEADLINE`, or it counts as failed (the client reverts itself). When too many of
the recent upgrades failed, the rollout halts until an administrator resumes it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta

from bastion.jump_clients import rules, service
from bastion.jump_clients.builds import Unsent, download_failed
from bastion.jump_clients.repository import Behind, JumpClientRepository, UpgradeRepository
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import ConflictError
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork

ROLLOUT_KEY = "jump_clients.rollout"
UPGRADE_DEADLINE = timedelta(minutes=10)
_TIMED_OUT = (
    "it did not come back on the new version within "
    f"{int(UPGRADE_DEADLINE.total_seconds() // 60)} min"
)
UPGRADE = "upgrade-"
"""How upgrade commands are named, so that their results can be told apart."""


@dataclass(frozen=True)
class BuildInfo:
    version: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Order:
    """Tell this client to upgrade to this build."""

    row_id: int
    client_id: str
    command_id: str
    build: BuildInfo


def plan(uow: UnitOfWork, site_version: str, build: BuildInfo | None) -> list[Order]:
    """Start the next upgrades (marked upgrading here; the caller sends them after commit).

    Counts the upgrades under way first, and reads a few columns of the clients still
    behind (never whole rows) only when a place is free: the rollout ticks every second
    over fleets of tens of thousands."""
    now = utc_now()
    upgrades = uow.repository(UpgradeRepository)
    upgrades.time_out(now - UPGRADE_DEADLINE, now, _TIMED_OUT)
    if build is None or build.version != site_version or halted(uow) is not None:
        return []
    fleet = service.settings(uow)
    upgrading = upgrades.upgrading(site_version)
    if upgrading >= fleet.max_concurrent_upgrades:
        return []  # the usual answer while a rollout runs: a count, not the fleet's rows
    behind = upgrades.behind(site_version)

    def canary(client: Behind) -> bool:
        return rules.is_canary(client.client_id, fleet.canary_percent)

    waiting = [
        rules.Waiting(b.row_id, b.client_id, b.first, canary(b))
        for b in behind
        if b.online and _may_start(b, site_version)
    ]
    canaries = sum(1 for b in behind if b.upgrade_state != "failed" and canary(b))
    chosen = rules.next_upgrades(waiting, upgrading, fleet.max_concurrent_upgrades, canaries)
    upgrades.start([w.row_id for w in chosen], build.version, now)
    return [Order(w.row_id, w.client_id, UPGRADE + secrets.token_hex(8), build) for w in chosen]


def _may_start(client: Behind, site_version: str) -> bool:
    failed_here = client.upgrade_state == "failed" and client.upgrade_version == site_version
    return client.upgrade_state != "upgrading" and not failed_here


def download_stalled(uow: UnitOfWork, client_id: str, stall_seconds: float) -> bool:
    """The client stopped reading the build it was downloading and was cut off: its
    upgrade failed, and its place goes to the next client. False if it held none."""
    detail = download_failed(Unsent.STALLED.value.format(stall=stall_seconds))
    return uow.repository(UpgradeRepository).fail(client_id, utc_now(), detail) > 0


def not_sent(uow: UnitOfWork, orders: list[Order]) -> None:
    """The gateways no longer held these clients: they wait for their next turn."""
    uow.repository(UpgradeRepository).unstart([order.row_id for order in orders])


# -- halting -------------------------------------------------------------------------------


def halted(uow: UnitOfWork) -> str | None:
    stored = uow.settings.get(ROLLOUT_KEY) or {}
    return str(stored["reason"]) if stored.get("halted") else None


def halt_if_failing(uow: UnitOfWork, site_version: str) -> str | None:
    """Halt the rollout when too many recent upgrades failed; the reason, once."""
    if halted(uow) is not None:
        return None
    upgrades = uow.repository(UpgradeRepository)
    recent = upgrades.recent_outcomes(site_version, rules.HALT_SAMPLE)
    failure_percent = service.settings(uow).halt_failure_percent
    reason = rules.halt_reason(recent, failure_percent, upgrades.live_count())
    if reason is not None:
        uow.settings.set(
            ROLLOUT_KEY, {"halted": True, "reason": reason, "at": utc_now().isoformat()}
        )
        audit.record(
            uow, Actor(None, "appliance"), "jump_clients.rollout.halted", "", reason=reason
        )
    return reason


def resume(uow: UnitOfWork, actor: Actor, site_version: str, retry_failed: bool) -> int:
    """Resume a halted rollout; with `retry_failed`, clients that failed try again."""
    uow.settings.set(ROLLOUT_KEY, {"halted": False})
    retried = 0
    if retry_failed:
        retried = uow.repository(UpgradeRepository).retry_failed(site_version)
    audit.record(uow, actor, "jump_clients.rollout.resumed", "", retried=retried)
    return retried


# -- progress and jumps ----------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    site_version: str
    total: int
    upgraded: int
    pending: int
    upgrading: int
    failed: int
    offline: int
    """Out of date and not connected: it upgrades when it next connects or checks in."""
    halted: str | None


def progress(uow: UnitOfWork, site_version: str) -> Progress:
    counts = {"total": 0, "upgraded": 0, "pending": 0, "upgrading": 0, "failed": 0}
    offline = 0
    for current, state, online, count in uow.repository(UpgradeRepository).tally(site_version):
        counts["total"] += count
        if current:
            counts["upgraded"] += count
        elif state in ("upgrading", "failed"):
            counts[state] += count
        elif online:
            counts["pending"] += count
        else:
            offline += count
    return Progress(site_version=site_version, offline=offline, halted=halted(uow), **counts)


@dataclass(frozen=True)
class TrustPreflight:
    """How many Jump Clients a site release built with other anchors would lose (R19)."""

    offline: int
    """Live clients whose anchors include none of the release's: they would go offline."""
    total: int


def trust_preflight(uow: UnitOfWork, release_anchors: tuple[str, ...]) -> TrustPreflight:
    reported = uow.repository(UpgradeRepository).live_anchors()
    lost = sum(1 for text in reported if not rules.still_trusted(json.loads(text), release_anchors))
    return TrustPreflight(offline=lost, total=len(reported))


def jump_refusal(uow: UnitOfWork, site_version: str, row_id: int) -> None:
    """A client waiting for its upgrade cannot be jumped to; trying moves it to the front
    of the queue (R14). Raises for such a client."""
    row = uow.repository(JumpClientRepository).get(row_id)
    if row is None or row.version == site_version:
        return
    row.upgrade_first = True
    raise ConflictError(
        f"{row.name} runs Jump Client {row.version} and waits for its upgrade to "
        f"{site_version}: it cannot be jumped to until then. It is now first in the "
        "upgrade queue; try again in a minute.",
        recorded=True,
    )
