"""`/login/reports`: the site's sessions, their recordings, and the session settings;
watching a session in progress (`static/session-watch.js`) and ending it;
`/console`: the web console, a shell on a Jump Client in the browser (`static/web-console.js`
with the vendored xterm.js)."""

from __future__ import annotations

from math import ceil
from typing import Annotated, Any

from fastapi import Depends, Form, Path, Query, Request, Response
from fastapi.responses import FileResponse

from bastion.access_console import protocol as p
from bastion.accounts.deps import AdministratorDep, CsrfDep, SignedInDep, page_actor
from bastion.agents.protocol import TerminalSize
from bastion.jump_clients.service import JumpClientsSetup
from bastion.platform.errors import NotFoundError, ServiceError
from bastion.platform.runtime import Runtime
from bastion.platform.web.deps import RuntimeDep, UowDep, part
from bastion.platform.web.forms import redirect, reloads_go_to
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import MAX_ID, PRINTABLE
from bastion.platform.web.templating import render
from bastion.sessions import service
from bastion.sessions.api import end_now
from bastion.sessions.console import start_session
from bastion.sessions.recording import MEDIA_TYPE, blob_path
from bastion.sessions.relay import Rendezvous
from bastion.sessions.repository import SessionFilter
from bastion.sessions.rules import SessionSettings
from bastion.sessions.schemas import UUID_PATTERN
from bastion.sessions.watching import open_watch

router = Router(include_in_schema=False)
REPORTS = "/login/reports"
CONSOLE = "/console"
PAGE_SIZE = 50
MAX_PAGE = MAX_ID // PAGE_SIZE
Filter = Annotated[str | None, Query(max_length=255, pattern=PRINTABLE)]
RendezvousDep = Annotated[Rendezvous, Depends(part(Rendezvous))]
SetupDep = Annotated[JumpClientsSetup, Depends(part(JumpClientsSetup))]


@router.get(REPORTS)
def reports(
    request: Request,
    uow: UowDep,
    current: AdministratorDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    username: Filter = None,
    endpoint: Filter = None,
) -> Response:
    username, endpoint = (username or "").strip() or None, (endpoint or "").strip() or None
    wanted = SessionFilter(username=username, endpoint=endpoint)
    found = service.list_sessions(uow, wanted, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    return render(
        request,
        "reports.html",
        current,
        sessions=found.sessions,
        total=found.total,
        page=page,
        pages=max(1, ceil(found.total / PAGE_SIZE)),
        username=username or "",
        endpoint=endpoint or "",
        settings=service.settings(uow),
    )


@router.post(f"{REPORTS}/settings", dependencies=[CsrfDep])
def set_settings(
    request: Request,
    uow: UowDep,
    current: AdministratorDep,
    record_input: Annotated[str, Form()] = "",
) -> Response:
    chosen = SessionSettings(record_input=record_input == "on")
    service.set_settings(uow, page_actor(request, current), chosen)
    uow.commit()
    return redirect(REPORTS)


reloads_go_to(router, REPORTS, f"{REPORTS}/settings")


@router.get(REPORTS + "/{session_id}/recording")
def recording(
    session_id: Annotated[str, Path(pattern=UUID_PATTERN)],
    uow: UowDep,
    current: AdministratorDep,
    rendezvous: RendezvousDep,
) -> Response:
    try:
        sha256, _size = service.recording_of(uow, session_id)
    except ServiceError as error:
        raise NotFoundError(str(error)) from None
    path = blob_path(rendezvous.blobs_dir, sha256)
    if not path.is_file():
        raise NotFoundError("The recording is not in this appliance's blob store (yet).")
    return FileResponse(path, media_type=MEDIA_TYPE, filename=f"session-{session_id}.cast")


# Watching and ending a session in progress, as the access console and the API do.


@router.get(REPORTS + "/{session_id}/watch")
def watch_page(
    request: Request,
    session_id: Annotated[str, Path(pattern=UUID_PATTERN)],
    uow: UowDep,
    current: AdministratorDep,
) -> Response:
    view = service.get_session(uow, session_id)
    return render(request, "session_watch.html", current, session=view)


@router.post(REPORTS + "/{session_id}/watch", dependencies=[CsrfDep])
async def watch_open(
    request: Request,
    session_id: Annotated[str, Path(pattern=UUID_PATTERN)],
    runtime: RuntimeDep,
    rendezvous: RendezvousDep,
    current: AdministratorDep,
) -> p.WatchOpened:
    """For the page's script: the watch's path and single-use token (JSON); a refusal is
    the error page, whose message the script shows."""
    return await open_watch(runtime, rendezvous, page_actor(request, current), session_id)


@router.post(REPORTS + "/{session_id}/end", dependencies=[CsrfDep])
async def end_from_page(
    request: Request,
    session_id: Annotated[str, Path(pattern=UUID_PATTERN)],
    runtime: RuntimeDep,
    rendezvous: RendezvousDep,
    current: AdministratorDep,
) -> Response:
    await end_now(runtime, rendezvous, page_actor(request, current), session_id)
    return redirect(REPORTS)


@router.get(REPORTS + "/{session_id}/end")
def reload_end(session_id: Annotated[str, Path(pattern=UUID_PATTERN)]) -> Response:
    """Opening the form's address again leads back to the reports."""
    return redirect(REPORTS)


# The web console: the same Jump Items and the same opening as the access console's API.


@router.get(CONSOLE)
def web_console(request: Request, uow: UowDep, setup: SetupDep, current: SignedInDep) -> Response:
    items = service.jump_items(uow, setup, current.principal)
    return render(request, "web_console.html", current, items=items)


@router.post(f"{CONSOLE}/sessions", dependencies=[CsrfDep])
async def web_console_open(
    request: Request,
    runtime: RuntimeDep,
    setup: SetupDep,
    rendezvous: RendezvousDep,
    current: SignedInDep,
    jump_item_id: Annotated[int, Form(ge=1, le=MAX_ID)],
    kind: Annotated[p.JumpItemKind, Form()] = "jump_client",
    cols: Annotated[TerminalSize, Form()] = 80,
    rows: Annotated[TerminalSize, Form()] = 24,
) -> p.SessionOpened:
    """For the page's script: the session's terminal path and single-use token (JSON);
    a refusal is the error page, whose message the script shows."""
    body = p.OpenSession(jump_item_id=jump_item_id, kind=kind, cols=cols, rows=rows)
    return await start_session(runtime, setup, rendezvous, page_actor(request, current), body)


reloads_go_to(router, CONSOLE, f"{CONSOLE}/sessions")


# The Jump Groups an account may use, on its page under /login/users.


def user_jump_groups(request: Request) -> dict[str, Any]:
    """For the account page: the Jump Groups this account may use."""
    account_id = request.path_params.get("account_id")
    if not isinstance(account_id, int):
        return {}
    runtime: Runtime = request.app.state.runtime
    with runtime.uow() as uow:
        try:
            return {"jump_groups": service.granted_groups(uow, account_id)}
        except ServiceError:
            return {}


@router.post("/login/users/{account_id:int}/jump-groups", dependencies=[CsrfDep])
def set_user_jump_groups(
    request: Request,
    account_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    uow: UowDep,
    current: AdministratorDep,
    jump_groups: Annotated[str, Form(max_length=25_000)] = "",
) -> Response:
    """One Jump Group a line (or comma-separated)."""
    names = [n for n in jump_groups.replace(",", "\n").splitlines() if n.strip()]
    service.grant_groups(uow, page_actor(request, current), account_id, names)
    uow.commit()
    return redirect(f"/login/users/{account_id}")


@router.get("/login/users/{account_id:int}/jump-groups")
def reload_user_jump_groups(account_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> Response:
    """Opening the form's address again leads back to the account's page."""
    return redirect(f"/login/users/{account_id}")
