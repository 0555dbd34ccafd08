"""Installs as the pages show them: the banner, the progress box, past outcomes.

The supervisor's status (`SupervisorClient.status`) is turned into the few
values the Updates page, its polling script and Status > Basics show.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from bastion.installs import service as installs
from bastion.platform.clock import utc_now
from bastion.platform.errors import ServiceError
from bastion.platform.runtime import Runtime
from bastion.supervisor.client import SupervisorClient
from bastion.supervisor.journal import HistoryEntry, PlannedRelease
from bastion.supervisor.messages import PendingInstall, SupervisorStatus
from bastion.updates import service as updates
from bastion.updates.service import UpdateSetup


def supervisor_of(runtime: Runtime) -> SupervisorClient:
    return runtime.part(SupervisorClient)


def release_names(releases: Iterable[PlannedRelease]) -> str:
    return ", ".join(r.name for r in releases)


def _parse(iso: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


def utc_text(iso: str, now: datetime | None = None) -> str:
    """ "22:00 UTC", with the date when it is not today."""
    at = _parse(iso)
    if at is None:
        return iso
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    return f"{at:%H:%M} UTC" + (f" on {at:%Y-%m-%d}" if at.date() != today else "")


def banner(pending: PendingInstall | None) -> str | None:
    """What every signed-in user reads while an install is scheduled (R5)."""
    if pending is None:
        return None
    at = utc_text(pending.not_before)
    return f"Bastion will be updated to {pending.names} at {at}; you will be signed out then."


def _elapsed(started_at: str, now: datetime) -> float | None:
    started = _parse(started_at)
    return round((now - started).total_seconds(), 1) if started else None


def progress(status: SupervisorStatus, now: datetime) -> dict[str, Any]:
    """The install box (and its polling script's JSON): state, activity, steps done of all,
    elapsed, what is scheduled, past outcomes."""
    running = status.progress
    journal = running.journal if running else None
    history = [entry.to_dict() for entry in status.history]
    return {
        "state": status.state,
        "activity": status.activity,
        "release": journal.release.name if journal else None,
        "done": running.done if running else 0,
        "total": running.total if running else 0,
        "elapsed_seconds": _elapsed(journal.started_at, now) if journal else None,
        "queue": release_names(journal.queue) if journal else "",
        "pending": _pending(status.pending, now) if status.pending else None,
        "base_version": status.base_version,
        "history": list(reversed(history)),
        "last": history[-1] if history else None,
        "kept": [
            {**kept, "at": utc_text(str(kept.get("until", "")), now)}
            for kept in status.kept_sessions
        ],
    }


def _pending(pending: PendingInstall, now: datetime) -> dict[str, Any]:
    return {
        "install_id": pending.install_id,
        "releases": pending.names,
        "not_before": pending.not_before,
        "at": utc_text(pending.not_before, now),
        "requested_by": pending.requested_by,
        "estimate_seconds": pending.estimate_seconds,
    }


def last_outcomes(history: list[HistoryEntry]) -> dict[str, HistoryEntry | None]:
    """For Status > Basics: the last install, and the last one rolled back."""
    return {
        "last_install": history[-1] if history else None,
        "last_rollback": installs.last_rollback(history),
    }


def banner_context(request: Request) -> dict[str, Any]:
    """On every signed-in page: the install that is scheduled, if any (R5)."""
    runtime: Runtime = request.app.state.runtime
    return {"install_banner": banner(installs.pending(runtime.settings.data_dir))}


def updates_page_context(request: Request) -> dict[str, Any]:
    """On the Updates page: what can be installed, and the install box."""
    runtime: Runtime = request.app.state.runtime
    shown: dict[str, Any] = {"partials": ["_installs.html"]}
    try:
        status = supervisor_of(runtime).status()
        shown["install"] = progress(status, utc_now())
    except ServiceError as error:
        shown["install_error"] = str(error)
    uow = getattr(request.state, "uow", None)
    if uow is None:
        return shown
    setup = runtime.part(UpdateSetup)
    try:
        rows = updates.known_releases(uow, setup)
        shown["installable"] = can = installs.installable(uow, setup)
    except ServiceError:
        return shown  # the Updates page says why releases cannot be listed
    shown["choices"] = [r.name for r in rows if r.downloaded and r.name in can]
    return shown
