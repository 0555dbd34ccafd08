"""Sessions: who may jump where, opening a session's record, ending it, and the reports.

The relay itself (`relay.py`) lives in the serving worker and calls `finish` when a
session ends; everything here runs over a unit of work and never commits.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from bastion.accounts import service as accounts
from bastion.agents.protocol import CommandResult, SshTarget
from bastion.jump_clients import service as jump_clients
from bastion.jump_clients import upgrades
from bastion.jump_clients.service import JumpClientsSetup, JumpClientView
from bastion.jumpoints import service as jumpoints
from bastion.jumpoints.service import JumpointsSetup, SshItemView
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from bastion.platform.principals import Actor, Principal
from bastion.platform.unit_of_work import UnitOfWork
from bastion.sessions import rules
from bastion.sessions.models import SessionRow
from bastion.sessions.repository import JumpGroupGrantRepository, SessionFilter, SessionRepository
from bastion.sessions.rules import LicensedCounts, Seat, SessionRuleError, SessionSettings
from bastion.updates import service as updates

SETTINGS_KEY = "sessions.settings"

# -- permissions and settings ------------------------------------------------------------


def granted_groups(uow: UnitOfWork, account_id: int) -> list[str]:
    accounts.get_account(uow, account_id)
    return uow.repository(JumpGroupGrantRepository).of(account_id)


def grant_groups(uow: UnitOfWork, actor: Actor, account_id: int, groups: list[str]) -> list[str]:
    """Replace the Jump Groups a representative may use."""
    account = accounts.get_account(uow, account_id)
    try:
        cleaned = rules.clean_groups(groups)
    except SessionRuleError as error:
        raise InvalidInputError(str(error)) from None
    uow.repository(JumpGroupGrantRepository).replace(account_id, cleaned)
    audit.record(uow, actor, "sessions.jump_groups", account.username, jump_groups=cleaned)
    return cleaned


def settings(uow: UnitOfWork) -> SessionSettings:
    stored = uow.settings.get(SETTINGS_KEY) or {}
    return SessionSettings(record_input=bool(stored.get("record_input", False)))


def set_settings(uow: UnitOfWork, actor: Actor, chosen: SessionSettings) -> SessionSettings:
    uow.settings.set(SETTINGS_KEY, asdict(chosen))
    audit.record(uow, actor, "sessions.settings", "Sessions", **asdict(chosen))
    return chosen


def _groups_of(uow: UnitOfWork, principal: Principal) -> set[str] | None:
    """None: every group (administrators)."""
    if principal.is_administrator:
        return None
    if principal.account_id is None:
        return set()
    return set(uow.repository(JumpGroupGrantRepository).of(principal.account_id))


# -- jump items ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JumpItemView:
    id: int
    name: str
    hostname: str
    group: str
    tag: str
    mode: str
    status: str
    version: str
    jumpable: bool
    reason: str
    kind: str = "jump_client"
    """"jump_client" (a shell on the client's machine) or "ssh" (SSH through a Jumpoint)."""


def _item(client: JumpClientView) -> JumpItemView:
    refusal = rules.jump_refusal(client.status.value, client.mode, client.version, client.name)
    return JumpItemView(
        client.id,
        client.name,
        client.hostname,
        client.jump_group,
        client.tag,
        client.mode,
        rules.jump_status(client.status.value),
        client.version,
        refusal is None or _wakeable(client),
        refusal or "",
    )


def _wakeable(client: JumpClientView) -> bool:
    """A passive client that is not connected is woken when someone jumps to it."""
    return client.mode == "passive" and client.status.value in ("offline", "lost")


def jump_items(
    uow: UnitOfWork, setup: JumpClientsSetup, principal: Principal
) -> list[JumpItemView]:
    """The Jump Items this person may use, with whether a jump can start now: the Jump
    Clients of their Jump Groups (not Jumpoints: they open no shell), then the SSH Jump
    Items of their Jump Groups, each jumpable when its Jumpoint is."""
    groups = _groups_of(uow, principal)
    clients = jump_clients.clients_in_groups(uow, setup, groups)
    shells = [_item(c) for c in clients if c.kind == "jump_client"]
    every = {c.id: c for c in jump_clients.clients_in_groups(uow, setup, None)}
    ssh = [
        _ssh_item(i, every[i.jumpoint_id])
        for i in jumpoints.list_items(uow, setup, groups)
        if i.jumpoint_id in every
    ]
    return shells + ssh


def _ssh_item(item: SshItemView, jumpoint: JumpClientView) -> JumpItemView:
    """An SSH Jump Item as the console lists it: jumpable when its Jumpoint is."""
    through = _item(jumpoint)
    return JumpItemView(
        item.id,
        item.name,
        item.host,
        item.jump_group,
        item.tag,
        jumpoint.mode,
        through.status,
        jumpoint.version,
        through.jumpable,
        f"its Jumpoint: {through.reason}" if through.reason else "",
        "ssh",
    )


# -- opening and ending ---------------------------------------------------------------------


@dataclass(frozen=True)
class SessionPlan:
    """A session whose record is made: the relay waits for both ends of it."""

    session_id: str
    client_id: str
    client_name: str
    mode: str
    record_input: bool
    wake: jump_clients.WakeTarget | None
    """A passive client that is not connected: wake it first."""
    seat: Seat
    """Whose session this is and on which endpoint, as the licence counts it."""
    licensed: LicensedCounts | None
    """The licence add-on's counts when the session opened; None: no limit."""
    target: SshTarget | None = None
    """Through a Jumpoint: the SSH server and the vaulted credential (None: a shell)."""


def open_session(
    uow: UnitOfWork, setup: JumpClientsSetup, actor: Actor, row_id: int
) -> SessionPlan:
    """Check that this person may jump to this client now, and make the session's record.

    Refused with a message for each reason: unknown client, not permitted, revoked,
    waiting for an upgrade (which moves it to the front of the queue), a version without
    sessions, offline. The plan carries the licence's counts: the rendezvous, which holds
    the sessions in progress, refuses one beyond them."""
    client = jump_clients.get_client(uow, setup, row_id)
    _check_permitted(uow, actor, client.name, client.jump_group)
    if client.kind == "jumpoint":
        raise ConflictError(
            f"{client.name} is a Jumpoint: it opens no shell on its own machine. Jump to one "
            "of the SSH Jump Items reached through it."
        )
    wake = _reachable(uow, setup, actor, client)
    return _record(
        uow, actor, client, wake, Reached(client.name, client.hostname, client.client_id)
    )


def open_ssh_session(
    uow: UnitOfWork,
    setup: JumpClientsSetup,
    vault: JumpointsSetup,
    actor: Actor,
    item_id: int,
) -> SessionPlan:
    """The same checks and record as `open_session`, for an SSH Jump Item: the item's Jump
    Group is the one granted, its Jumpoint the one that must be reachable. The plan
    carries the vaulted credential, unsealed, for the Jumpoint's `start_ssh_session`."""
    item = jumpoints.get_item(uow, setup, item_id)
    _check_permitted(uow, actor, item.name, item.jump_group)
    jumpoint = jump_clients.get_client(uow, setup, item.jumpoint_id)
    wake = _reachable(uow, setup, actor, jumpoint)
    where = f"{item.username}@{item.host}:{item.port}"
    reached = Reached(item.name, where, f"{jumpoint.client_id}/ssh/{item.id}")
    plan = _record(uow, actor, jumpoint, wake, reached)
    return replace(plan, target=jumpoints.ssh_target(uow, vault, item))


@dataclass(frozen=True)
class Reached:
    """What a session's record and the licence name as its endpoint."""

    name: str
    hostname: str
    endpoint: str
    """The endpoint as the licence counts it: a Jump Client, or one SSH server."""


def _check_permitted(uow: UnitOfWork, actor: Actor, name: str, group: str) -> None:
    principal = actor.principal
    assert principal is not None
    if not rules.may_use(principal.is_administrator, _groups_of(uow, principal) or (), group):
        where = f"the Jump Group {group!r}" if group else "no Jump Group"
        raise PermissionDeniedError(
            f"You may not use {name}: it is in {where}, which is not granted to you. "
            "Ask an administrator."
        )


def _reachable(
    uow: UnitOfWork, setup: JumpClientsSetup, actor: Actor, client: JumpClientView
) -> jump_clients.WakeTarget | None:
    """Refused with the reason when `client` cannot take a session now; a passive client
    not connected is to be woken first (its wake target)."""
    status = client.status.value
    if status in rules.WAITING_FOR_UPGRADE:
        upgrades.jump_refusal(uow, setup.site_version, client.id)
    refusal = rules.jump_refusal(status, client.mode, client.version, client.name)
    if refusal is not None and _wakeable(client):
        return _wake_target(uow, setup, actor, client)
    if refusal is not None:
        raise ConflictError(refusal)
    return None


def _wake_target(
    uow: UnitOfWork, setup: JumpClientsSetup, actor: Actor, client: JumpClientView
) -> jump_clients.WakeTarget:
    try:
        return jump_clients.wake_target(uow, setup, actor, client.id)
    except ConflictError as error:
        raise ConflictError(
            f"{client.name} is a passive Jump Client, not connected, and cannot be woken: {error}"
        ) from None


def _record(
    uow: UnitOfWork,
    actor: Actor,
    client: JumpClientView,
    wake: jump_clients.WakeTarget | None,
    reached: Reached,
) -> SessionPlan:
    principal = actor.principal
    assert principal is not None
    record_input = settings(uow).record_input
    row = uow.repository(SessionRepository).add(
        SessionRow(
            id=str(uuid.uuid4()),
            account_id=principal.account_id,
            username=principal.name[:64],
            jump_client_id=client.id,
            jump_client_name=reached.name[:200],
            jump_client_hostname=reached.hostname[:255],
            started_at=utc_now(),
            end_reason="",
            bytes_from_console=0,
            bytes_from_endpoint=0,
            input_recorded=record_input,
        )
    )
    audit.record(uow, actor, "sessions.open", reached.name, session_id=row.id)
    seat = Seat(principal.account_id, row.username, reached.endpoint, row.jump_client_name)
    return SessionPlan(
        row.id, client.client_id, client.name, client.mode, record_input, wake, seat, licensed(uow)
    )


@dataclass(frozen=True)
class Outcome:
    """How a session ended, as the relay saw it."""

    reason: str
    joined_at: datetime | None = None
    bytes_from_console: int = 0
    bytes_from_endpoint: int = 0
    recording_sha256: str | None = None
    recording_size: int | None = None


def finish(uow: UnitOfWork, session_id: str, outcome: Outcome) -> bool:
    """Write how the session ended; an ended record never changes again (False then)."""
    row = uow.repository(SessionRepository).get(session_id)
    if row is None or row.ended_at is not None:
        return False
    row.ended_at = utc_now()
    row.end_reason = outcome.reason[:500]
    row.joined_at = outcome.joined_at
    row.bytes_from_console = outcome.bytes_from_console
    row.bytes_from_endpoint = outcome.bytes_from_endpoint
    row.recording_sha256 = outcome.recording_sha256
    row.recording_size = outcome.recording_size
    audit.record(
        uow,
        Actor(None, "appliance"),
        "sessions.end",
        row.jump_client_name,
        session_id=row.id,
        reason=row.end_reason,
    )
    return True


def refused_by_client(uow: UnitOfWork, client_id: str, result: CommandResult) -> bool:
    """End the record of a session whose Jump Client would not start it (its answer to
    the order, not "done"), with a reason for the representative. Runs where the answer
    arrives (a gateway process); the serving worker that holds the session sees the
    record ended (`ended_early`) and ends the session at once. False if `result` is no
    refusal of a session of `client_id`'s still open."""
    session_id = rules.session_of(result.command_id)
    if session_id is None or result.outcome == "done":
        return False
    row = uow.repository(SessionRepository).get(session_id)
    if row is None or row.ended_at is not None or row.joined_at is not None:
        return False
    if row.jump_client_id is None or row.jump_client_id != jump_clients.row_id_of(uow, client_id):
        return False
    reason = rules.client_refusal(row.jump_client_name, result.outcome, result.detail)
    return finish(uow, session_id, Outcome(reason=reason))


def ended_early(uow: UnitOfWork, session_id: str) -> str | None:
    """Why the record of a session still waiting for its Jump Client was ended elsewhere
    (`refused_by_client`), or None while it is open."""
    row = uow.repository(SessionRepository).get(session_id)
    if row is None or row.ended_at is None:
        return None
    return row.end_reason


def end_reason_by(actor: Actor) -> str:
    return f"ended by {actor.name}"


def watching(uow: UnitOfWork, actor: Actor, session_id: str) -> None:
    """An administrator is about to watch a session: only administrators may, and the
    audit log says who watched which."""
    if actor.principal is None or not actor.principal.is_administrator:
        raise PermissionDeniedError("Only administrators may watch a session.")
    row = _row(uow, session_id)
    audit.record(uow, actor, "sessions.watch", row.jump_client_name, session_id=session_id)


def end_not_live(uow: UnitOfWork, actor: Actor, session_id: str) -> SessionView:
    """An administrator ends a session that no relay here holds (its worker stopped)."""
    row = _row(uow, session_id)
    if row.ended_at is not None:
        raise ConflictError(f"This session ended already ({row.end_reason}).")
    finish(uow, session_id, Outcome(f"{end_reason_by(actor)} (it was not live here)"))
    return _view(row)


# -- the licence (R41) ---------------------------------------------------------------------------


def licensed(uow: UnitOfWork) -> LicensedCounts | None:
    """The installed licence add-on's counts; None without one (no limit)."""
    return _counts(updates.license_of(uow))


def _counts(found: updates.License | None) -> LicensedCounts | None:
    return None if found is None else LicensedCounts(found.representatives, found.endpoints)


@dataclass(frozen=True)
class LicenceUse:
    """Sessions in progress against the licence: the counts and who holds them."""

    version: str | None
    """The licence add-on's version; None: none is installed, there is no limit."""
    licensed: LicensedCounts | None
    in_sessions: rules.InSessions


def licence_use(uow: UnitOfWork, seats: list[Seat]) -> LicenceUse:
    """`seats`: the sessions in progress, from the rendezvous that holds them."""
    found = updates.license_of(uow)
    return LicenceUse(found.version if found else None, _counts(found), rules.in_sessions(seats))


# -- reports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionView:
    id: str
    account_id: int | None
    username: str
    jump_client_id: int | None
    jump_client_name: str
    jump_client_hostname: str
    started_at: datetime
    joined_at: datetime | None
    ended_at: datetime | None
    end_reason: str
    duration_seconds: float | None
    bytes_from_console: int
    bytes_from_endpoint: int
    recording_sha256: str | None
    recording_size: int | None
    input_recorded: bool

    @property
    def live(self) -> bool:
        return self.ended_at is None


def _view(row: SessionRow) -> SessionView:
    duration = None if row.ended_at is None else (row.ended_at - row.started_at).total_seconds()
    return SessionView(
        row.id,
        row.account_id,
        row.username,
        row.jump_client_id,
        row.jump_client_name,
        row.jump_client_hostname,
        row.started_at,
        row.joined_at,
        row.ended_at,
        row.end_reason,
        duration,
        row.bytes_from_console,
        row.bytes_from_endpoint,
        row.recording_sha256,
        row.recording_size,
        row.input_recorded,
    )


@dataclass(frozen=True)
class Page:
    sessions: list[SessionView]
    total: int


def list_sessions(uow: UnitOfWork, wanted: SessionFilter, limit: int, offset: int) -> Page:
    repo = uow.repository(SessionRepository)
    return Page([_view(r) for r in repo.page(wanted, limit, offset)], repo.count(wanted))


def _row(uow: UnitOfWork, session_id: str) -> SessionRow:
    row = uow.repository(SessionRepository).get(session_id)
    if row is None:
        raise NotFoundError(f"There is no session with id {session_id}; list them first.")
    return row


def get_session(uow: UnitOfWork, session_id: str) -> SessionView:
    return _view(_row(uow, session_id))


def recording_of(uow: UnitOfWork, session_id: str) -> tuple[str, int]:
    """The recording's SHA-256 and size; refused while live or when there is none."""
    row = _row(uow, session_id)
    if row.ended_at is None:
        raise ConflictError("The session is still live; its recording is stored when it ends.")
    if row.recording_sha256 is None or row.recording_size is None:
        raise NotFoundError("This session has no recording (the Jump Client never joined).")
    return row.recording_sha256, row.recording_size
