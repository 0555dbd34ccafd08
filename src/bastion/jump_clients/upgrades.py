"""Fleet upgrades after a site install (R12-R14, R20): who upgrades next, when a rollout
halts, and how far the fleet has come.

A client of an older version waits (Upgrade Pending) until its turn: at most the site's
cap upgrade at once, those someone tried to jump to first, then a canary share of the
fleet, then the rest. A client that started must come back on the new version within
`UPGRADE_DEADLINE`, or it counts as failed (the client reverts itself). When too many of
the recent upgrades failed, the rollout halts until an administrator resumes it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from bastion.jump_clients import rules, service
from bastion.jump_clients.models import JumpClientRow
from bastion.jump_clients.repository import JumpClientRepository
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import ConflictError
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork

ROLLOUT_KEY = "jump_clients.rollout"
UPGRADE_DEADLINE = timedelta(minutes=10)
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


def _rows(uow: UnitOfWork) -> list[JumpClientRow]:
    return list(uow.session.scalars(select(JumpClientRow).order_by(JumpClientRow.id)))


def _live(row: JumpClientRow) -> bool:
    return row.revoked_at is None and row.uninstall_requested_at is None


def plan(uow: UnitOfWork, site_version: str, build: BuildInfo | None) -> list[Order]:
    """Start the next upgrades (marked upgrading here; the caller sends them after commit)."""
    now = utc_now()
    rows = [r for r in _rows(uow) if _live(r)]
    _time_out(rows, now)
    if build is None or build.version != site_version or halted(uow) is not None:
        return []
    fleet = service.settings(uow)
    behind = [r for r in rows if r.version != site_version]
    upgrading = [r for r in behind if r.upgrade_state == "upgrading"]
    waiting = [r for r in behind if r.online and _may_start(r, site_version)]

    def canary(row: JumpClientRow) -> bool:
        return rules.is_canary(row.client_id, fleet.canary_percent)

    candidates = [rules.Waiting(r.id, r.client_id, r.upgrade_first, canary(r)) for r in waiting]
    canaries = sum(1 for r in behind if canary(r) and r.upgrade_state != "failed")
    chosen = rules.next_upgrades(
        candidates, len(upgrading), fleet.max_concurrent_upgrades, canaries
    )
    by_id = {r.id: r for r in waiting}
    return [_start(by_id[w.row_id], build, now) for w in chosen]


def _may_start(row: JumpClientRow, site_version: str) -> bool:
    failed_here = row.upgrade_state == "failed" and row.upgrade_version == site_version
    return row.upgrade_state != "upgrading" and not failed_here


def _start(row: JumpClientRow, build: BuildInfo, now: datetime) -> Order:
    row.upgrade_state, row.upgrade_version = "upgrading", build.version
    row.upgrade_started_at, row.upgrade_finished_at = now, None
    row.upgrade_detail, row.upgrade_first = "", False
    return Order(row.id, row.client_id, UPGRADE + secrets.token_hex(8), build)


def _time_out(rows: list[JumpClientRow], now: datetime) -> None:
    for row in rows:
        started = row.upgrade_started_at
        if row.upgrade_state == "upgrading" and started and now - started > UPGRADE_DEADLINE:
            minutes = int(UPGRADE_DEADLINE.total_seconds() // 60)
            _fail(row, now, f"it did not come back on {row.upgrade_version} within {minutes} min")


def _fail(row: JumpClientRow, now: datetime, detail: str) -> None:
    row.upgrade_state, row.upgrade_finished_at, row.upgrade_detail = "failed", now, detail


def not_sent(uow: UnitOfWork, order: Order) -> None:
    """The gateway no longer held the client: it waits for its next turn."""
    row = uow.repository(JumpClientRepository).get(order.row_id)
    if row is not None and row.upgrade_state == "upgrading":
        row.upgrade_state, row.upgrade_started_at = "", None


# -- halting -------------------------------------------------------------------------------


def halted(uow: UnitOfWork) -> str | None:
    stored = uow.settings.get(ROLLOUT_KEY) or {}
    return str(stored["reason"]) if stored.get("halted") else None


def halt_if_failing(uow: UnitOfWork, site_version: str) -> str | None:
    """Halt the rollout when too many recent upgrades failed; the reason, once."""
    if halted(uow) is not None:
        return None
    rows = [r for r in _rows(uow) if _live(r)]
    finished = [
        r
        for r in rows
        if r.upgrade_version == site_version and r.upgrade_state in ("done", "failed")
    ]
    finished.sort(key=lambda r: r.upgrade_finished_at or r.installed_at)
    recent = [r.upgrade_state == "done" for r in finished]
    reason = rules.halt_reason(recent, service.settings(uow).halt_failure_percent, len(rows))
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
        for row in _rows(uow):
            if row.upgrade_state == "failed" and row.upgrade_version == site_version:
                row.upgrade_state, row.upgrade_detail = "", ""
                retried += 1
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
    rows = [r for r in _rows(uow) if _live(r)]
    behind = [r for r in rows if r.version != site_version]
    state = [r.upgrade_state for r in behind]
    waiting = [r for r in behind if r.upgrade_state not in ("upgrading", "failed")]
    return Progress(
        site_version=site_version,
        total=len(rows),
        upgraded=len(rows) - len(behind),
        pending=sum(1 for r in waiting if r.online),
        upgrading=state.count("upgrading"),
        failed=state.count("failed"),
        offline=sum(1 for r in waiting if not r.online),
        halted=halted(uow),
    )


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
