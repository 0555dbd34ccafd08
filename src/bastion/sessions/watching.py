"""Watching a session live, for administrators signed in with a console token
(`bastion.access_console.protocol`): the sessions in progress, and a watch token for one.
The watch connection itself is in `terminal.py`."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import ValidationError

from bastion.access_console import protocol as p
from bastion.platform.errors import NotFoundError, PermissionDeniedError
from bastion.platform.principals import Actor
from bastion.platform.runtime import Runtime
from bastion.platform.web.deps import RuntimeDep, source_of
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import errors
from bastion.sessions import service
from bastion.sessions.api import SessionId
from bastion.sessions.console import ConsoleDep, RendezvousDep
from bastion.sessions.relay import LiveSession, Rendezvous
from bastion.supervisor.client import SupervisorClient

log = logging.getLogger("bastion.sessions")

router = Router(prefix=p.CONSOLE_API + "/live-sessions", tags=["access console"])


def administrator(request: Request, current: ConsoleDep) -> Actor:
    if not current.principal.is_administrator:
        raise PermissionDeniedError("Only administrators may watch sessions.")
    return Actor(current.principal, source_of(request))


AdministratorDep = Annotated[Actor, Depends(administrator)]


@router.get(
    "",
    response_model=list[p.LiveSessionInfo],
    responses=errors(401, 403, e403="only administrators may watch sessions."),
)
async def live_sessions(
    runtime: RuntimeDep, rendezvous: RendezvousDep, actor: AdministratorDep
) -> list[p.LiveSessionInfo]:
    """The sessions in progress on this appliance, oldest first: those live here, then
    those the worker an install replaced still keeps."""
    here = [live_info(live) for live in rendezvous.in_progress()]
    supervisor = runtime.part(SupervisorClient)
    kept = await asyncio.to_thread(supervisor.kept_live_sessions)
    return here + kept_infos(kept)


def kept_infos(described: list[dict[str, Any]]) -> list[p.LiveSessionInfo]:
    """The sessions other workers keep, as they described them. A description that
    cannot be read (a version that describes them otherwise) is left out and logged:
    the list still shows every other session."""
    infos = []
    for one in described:
        try:
            infos.append(p.LiveSessionInfo.model_validate(one))
        except ValidationError as error:
            log.warning(
                "A kept session's description cannot be read, so it is not listed: %s",
                error.errors(include_url=False, include_input=False),
            )
    return infos


def live_info(live: LiveSession) -> p.LiveSessionInfo:
    return p.LiveSessionInfo(
        session_id=live.session_id,
        title=live.title,
        representative=live.plan.seat.username,
        endpoint=live.plan.seat.client_name,
        started_at=live.joined_at,
        cols=live.cols,
        rows=live.rows,
        watchers=len(live.watchers),
    )


@router.post(
    "/{session_id}/watch",
    response_model=p.WatchOpened,
    status_code=201,
    responses=errors(
        401,
        403,
        404,
        409,
        e403="only administrators may watch sessions.",
        e404="no session with this id is in progress on this appliance.",
        e409="the session has as many watchers as it may have.",
    ),
)
async def watch(
    session_id: SessionId,
    runtime: RuntimeDep,
    rendezvous: RendezvousDep,
    actor: AdministratorDep,
) -> p.WatchOpened:
    """Watch a session, read-only: the answer's token goes in the `console_hello` on
    `watch_path` within 60 s. The audit log records who watched."""
    return await open_watch(runtime, rendezvous, actor, session_id)


async def open_watch(
    runtime: Runtime, rendezvous: Rendezvous, actor: Actor, session_id: str
) -> p.WatchOpened:
    """A watch of a session in progress, for the access console and the web page alike:
    live here, or kept by the worker an install replaced (the watch is relayed from it,
    `kept.py`)."""
    try:
        token = rendezvous.watch_ticket(session_id)
    except NotFoundError:
        supervisor = runtime.part(SupervisorClient)
        kept = await asyncio.to_thread(supervisor.watch_kept_session, session_id)
        if kept is None:
            raise
        token = rendezvous.kept_watches.give(session_id, *kept)
    await asyncio.to_thread(_audit, runtime, actor, session_id)
    return p.WatchOpened(
        session_id=session_id,
        watch_path=f"{p.CONSOLE_API}/live-sessions/{session_id}/watch",
        token=token,
    )


def _audit(runtime: Runtime, actor: Actor, session_id: str) -> None:
    with runtime.uow() as uow:
        service.watching(uow, actor, session_id)
        uow.commit()
