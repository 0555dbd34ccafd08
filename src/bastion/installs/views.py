"""Installs as the pages show them: the banner, the progress box, past outcomes.

The supervisor's status (`SupervisorClient.status`) is turned into the few
values the Updates page, its polling script and Status > Basics show.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from bastion.installs import service as installs
from bastion.platform.clock import utc_now
from bastion.platform.errors import ServiceError
from bastion.platform.runtime import Runtime
from bastion.supervisor.client import SupervisorClient
from bastion.supervisor.journal import HistoryEntry
from bastion.updates import service as updates
from bastion.updates.service import UpdateSetup


def supervisor_of(runtime: Runtime) -> SupervisorClient:
    return runtime.part(SupervisorClient)


def release_names(releases: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r.get('kind', '?')} {r.get('version', '?')}" for r in releases)


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


def banner(pending: dict[str, Any] | None) -> str | None:
    """What every signed-in user reads while an install is scheduled (R5)."""
    if not pending:
        return None
    names = release_names(list(pending.get("releases") or []))
    at = utc_text(str(pending.get("not_before", "")))
    return f"Bastion will be updated to {names} at {at}; you will be signed out then."


def _elapsed(started_at: str, now: datetime) -> float | None:
    started = _parse(started_at)
    return round((now - started).total_seconds(), 1) if started else None


def progress(status: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The install box: state, activity, steps done of all, elapsed, what is scheduled."""
    journal = status.get("journal") or {}
    release = journal.get("release") or {}
    pending = status.get("pending")
    history = list(status.get("history") or [])
    return {
        "state": status.get("state", "idle"),
        "activity": status.get("activity") or "",
        "release": f"{release['kind']} {release['version']}" if release else None,
        "done": int(journal.get("done", 0)),
        "total": int(journal.get("total", 0)),
        "elapsed_seconds": _elapsed(str(journal.get("started_at", "")), now) if journal else None,
        "queue": release_names(list(journal.get("queue") or [])),
        "pending": _pending(pending, now) if pending else None,
        "base_version": status.get("base_version"),
        "history": list(reversed(history)),
        "last": history[-1] if history else None,
    }


def _pending(pending: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "install_id": pending.get("install_id"),
        "releases": release_names(list(pending.get("releases") or [])),
        "not_before": pending.get("not_before"),
        "at": utc_text(str(pending.get("not_before", "")), now),
        "requested_by": pending.get("requested_by", ""),
        "estimate_seconds": pending.get("estimate_seconds"),
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
