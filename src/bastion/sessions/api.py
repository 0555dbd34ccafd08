"""Sessions in the JSON API: the reports, recordings, ending a live session, the site's
session settings, and the Jump Groups each account may use."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Path, Query
from fastapi.responses import FileResponse
from pydantic import BeforeValidator

from bastion.accounts.deps import ApiActorDep
from bastion.platform.errors import NotFoundError
from bastion.platform.principals import Actor
from bastion.platform.runtime import Runtime
from bastion.platform.web.deps import RuntimeDep, UowDep, part
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import MAX_ID, PRINTABLE, RowId, errors
from bastion.sessions import schemas as s
from bastion.sessions import service
from bastion.sessions.recording import MEDIA_TYPE, blob_path
from bastion.sessions.relay import Rendezvous
from bastion.sessions.repository import SessionFilter
from bastion.sessions.rules import SessionSettings
from bastion.supervisor.client import SupervisorClient

router = Router(prefix="/api/v1", tags=["sessions"])
SessionId = Annotated[str, Path(pattern=s.UUID_PATTERN, description="The session's id")]
RendezvousDep = Annotated[Rendezvous, Depends(part(Rendezvous))]


def _rfc3339(value: object) -> object:
    """Only a written time (RFC 3339); a bare number is not taken for a Unix time."""
    if isinstance(value, str) and not re.match(r"^\d{4}-\d{2}-\d{2}", value):
        raise ValueError("give the time as RFC 3339, e.g. 2026-12-02T10:00:00Z")
    return value


Moment = Annotated[datetime, BeforeValidator(_rfc3339)]
GROUPS = "a Jump Group name is blank, repeated past the cap, or not printable text."


def _out(view: service.SessionView) -> s.SessionOut:
    return s.SessionOut(**{**view.__dict__, "live": view.live})


@router.get("/sessions", response_model=s.SessionPage)
def list_sessions(
    uow: UowDep,
    actor: ApiActorDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    started_from: Annotated[Moment | None, Query(description="Started at or after")] = None,
    started_before: Annotated[Moment | None, Query(description="Started before")] = None,
    username: Annotated[str | None, Query(max_length=64, pattern=PRINTABLE)] = None,
    jump_client_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    endpoint: Annotated[
        str | None, Query(max_length=255, pattern=PRINTABLE, description="In name or hostname")
    ] = None,
) -> s.SessionPage:
    """Sessions, newest first: who, where, when, how long, and how they ended (R43)."""
    wanted = SessionFilter(
        _utc(started_from), _utc(started_before), username, jump_client_id, endpoint
    )
    page = service.list_sessions(uow, wanted, limit, offset)
    return s.SessionPage(total=page.total, sessions=[_out(v) for v in page.sessions])


def _utc(moment: datetime | None) -> datetime | None:
    """A time from the query in UTC (without an offset it is UTC); past the calendar's
    ends once moved to UTC, the end itself."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


@router.get("/sessions/settings", response_model=s.SessionSettingsBody)
def get_settings(uow: UowDep, actor: ApiActorDep) -> SessionSettings:
    return service.settings(uow)


@router.put("/sessions/settings", response_model=s.SessionSettingsBody)
def set_settings(body: s.SessionSettingsBody, uow: UowDep, actor: ApiActorDep) -> SessionSettings:
    """`record_input`: record keystrokes too (sessions opened from now on)."""
    chosen = service.set_settings(uow, actor, SessionSettings(**body.model_dump()))
    uow.commit()
    return chosen


@router.get("/sessions/licence", response_model=s.LicenceOut)
def get_licence(uow: UowDep, actor: ApiActorDep, rendezvous: RendezvousDep) -> s.LicenceOut:
    """Representatives and endpoints in sessions now, against the licence add-on's counts
    (none installed: no limit). Beyond a count a new session is refused."""
    return _licence_out(service.licence_use(uow, rendezvous.seats()))


def _licence_out(use: service.LicenceUse) -> s.LicenceOut:
    now, licensed = use.in_sessions, use.licensed
    return s.LicenceOut(
        license_version=use.version,
        representatives=s.RepresentativesInSessions(
            in_sessions=len(now.representatives),
            licensed=licensed.representatives if licensed else None,
            names=list(now.representatives),
        ),
        endpoints=s.EndpointsInSessions(
            in_sessions=len(now.endpoints),
            licensed=licensed.endpoints if licensed else None,
            endpoints=[
                s.EndpointInSessions(name=name, representatives=list(who))
                for name, who in now.endpoints
            ],
        ),
    )


@router.get("/sessions/{session_id}", response_model=s.SessionOut, responses=errors(404))
def get_session(session_id: SessionId, uow: UowDep, actor: ApiActorDep) -> s.SessionOut:
    return _out(service.get_session(uow, session_id))


@router.get(
    "/sessions/{session_id}/recording",
    response_class=FileResponse,
    responses={
        200: {"content": {MEDIA_TYPE: {}}, "description": "The asciicast v2 recording."},
        **errors(
            404,
            409,
            e404="no such session, or it has no recording.",
            e409="the session is still live.",
        ),
    },
)
def download_recording(
    session_id: SessionId, uow: UowDep, actor: ApiActorDep, rendezvous: RendezvousDep
) -> FileResponse:
    """The session's recording (asciicast v2: `asciinema play` plays it)."""
    sha256, _size = service.recording_of(uow, session_id)
    path = blob_path(rendezvous.blobs_dir, sha256)
    if not path.is_file():
        raise NotFoundError("The recording is not in this appliance's blob store (yet).")
    return FileResponse(path, media_type=MEDIA_TYPE, filename=f"session-{session_id}.cast")


@router.post(
    "/sessions/{session_id}/end",
    response_model=s.SessionOut,
    responses=errors(404, 409, e409="the session ended already."),
)
async def end_session(
    session_id: SessionId, runtime: RuntimeDep, actor: ApiActorDep, rendezvous: RendezvousDep
) -> s.SessionOut:
    """End a live session: both ends are told why, the recording is stored."""
    await end_now(runtime, rendezvous, actor, session_id)
    return _out(await asyncio.to_thread(_read, runtime, session_id))


async def end_now(runtime: Runtime, rendezvous: Rendezvous, actor: Actor, session_id: str) -> None:
    """An administrator ends a session: live here, kept by the worker an install replaced
    (through the supervisor), or only recorded as live (its worker stopped). For the API
    and the page alike."""
    reason = service.end_reason_by(actor)
    if await rendezvous.end_session(session_id, reason):
        return
    supervisor = runtime.part(SupervisorClient)
    if await asyncio.to_thread(supervisor.end_kept_session, session_id, reason):
        return
    await asyncio.to_thread(_end_not_live, runtime, actor, session_id)


def _end_not_live(runtime: Runtime, actor: Actor, session_id: str) -> None:
    with runtime.uow() as uow:
        service.end_not_live(uow, actor, session_id)
        uow.commit()


def _read(runtime: Runtime, session_id: str) -> service.SessionView:
    with runtime.uow() as uow:
        return service.get_session(uow, session_id)


@router.get(
    "/accounts/{account_id:int}/jump-groups", response_model=s.JumpGroups, responses=errors(404)
)
def get_jump_groups(account_id: RowId, uow: UowDep, actor: ApiActorDep) -> s.JumpGroups:
    return s.JumpGroups(jump_groups=service.granted_groups(uow, account_id))


@router.put(
    "/accounts/{account_id:int}/jump-groups",
    response_model=s.JumpGroups,
    responses=errors(400, 404, e400=GROUPS),
)
def set_jump_groups(
    account_id: RowId, body: s.JumpGroups, uow: UowDep, actor: ApiActorDep
) -> s.JumpGroups:
    """Replace the Jump Groups this account may use in the access console."""
    groups = service.grant_groups(uow, actor, account_id, body.jump_groups)
    uow.commit()
    return s.JumpGroups(jump_groups=groups)
