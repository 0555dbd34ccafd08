"""The access console's HTTPS API (`bastion.access_console.protocol`): sign-in, about,
the Jump Clients this person may use, and opening a session.

A console token is a signed-in session of kind "console": made by the one sign-in (its
lockout, attempt counting and password-check pool), ended by sign-out, by the same idle
and maximum limits as a web session, and at an install's switch or a restore. It is sent
as `Authorization: Bearer`; it is no web cookie, and a web cookie is no console token.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Path, Request, Response
from fastapi.responses import FileResponse

from bastion.access_console import protocol as p
from bastion.accounts import service as accounts
from bastion.accounts import sign_in
from bastion.accounts.deps import AccountsDep
from bastion.accounts.sign_in import CurrentSession
from bastion.jump_clients import service as jump_clients
from bastion.jump_clients.service import JumpClientsSetup
from bastion.jumpoints.service import JumpointsSetup
from bastion.platform import build
from bastion.platform.clock import utc_now
from bastion.platform.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from bastion.platform.principals import Actor
from bastion.platform.runtime import Runtime
from bastion.platform.web.deps import RuntimeDep, UowDep, part, source_of
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import errors
from bastion.sessions import service
from bastion.sessions.relay import Rendezvous

router = Router(prefix=p.CONSOLE_API, tags=["access console"])
SetupDep = Annotated[JumpClientsSetup, Depends(part(JumpClientsSetup))]
RendezvousDep = Annotated[Rendezvous, Depends(part(Rendezvous))]
CHANGE_PASSWORD = (
    "This account must choose a new password first: sign in at /login in a browser, then "
    "sign in here again."
)


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            f"Send 'Authorization: Bearer <token>'; get a token from POST {p.CONSOLE_API}/sign-in."
        )
    return token.strip()


def signed_in(request: Request, setup: AccountsDep, uow: UowDep) -> CurrentSession:
    """The person behind a console token."""
    try:
        current = sign_in.resolve_session(
            uow, _bearer(request), setup.session_limits, sign_in.CONSOLE
        )
    except AuthenticationError as error:
        uow.keep_record_of(error)
        raise
    uow.commit()  # when the session was last seen
    if current.must_change_password:
        raise PermissionDeniedError(CHANGE_PASSWORD)
    return current


ConsoleDep = Annotated[CurrentSession, Depends(signed_in)]


@router.post(
    "/sign-in",
    response_model=p.SignedIn,
    responses=errors(
        401,
        403,
        429,
        e401="the username or password is wrong, or the account is disabled.",
        e403="the account must choose a new password in a browser first.",
        e429="too many failed sign-ins for this name, or too many passwords being checked.",
    ),
)
async def console_sign_in(
    body: p.SignIn, request: Request, runtime: RuntimeDep, setup: AccountsDep
) -> p.SignedIn:
    """A console token for the representative, valid while used (the site's session limits)."""
    source = source_of(request)
    done = await sign_in.sign_in(
        runtime.uow,
        setup.hasher,
        setup.lockout,
        body.username,
        body.password,
        source,
        sign_in.CONSOLE,
    )
    account = await asyncio.to_thread(_account_of, runtime, done, source)
    return p.SignedIn(
        token=done.token,
        expires_at=utc_now() + setup.session_limits.maximum,
        username=account.username,
        display_name=account.display_name,
        role=account.role.value,
    )


def _account_of(runtime: Runtime, done: sign_in.SignedIn, source: str) -> accounts.AccountView:
    """The account signed in; one that must choose a new password is signed out again."""
    with runtime.uow() as uow:
        if done.must_change_password:
            sign_in.sign_out(uow, done.token, source, sign_in.CONSOLE)
            uow.commit()
            raise PermissionDeniedError(CHANGE_PASSWORD)
        return accounts.get_account(uow, done.principal.account_id or 0)


@router.post("/sign-out", status_code=204, responses=errors(401))
def console_sign_out(request: Request, uow: UowDep, current: ConsoleDep) -> Response:
    sign_in.sign_out(uow, _bearer(request), source_of(request), sign_in.CONSOLE)
    uow.commit()
    return Response(status_code=204)


@router.get("/about", response_model=p.About)
async def about(setup: SetupDep) -> p.About:
    """Which site this is and the build it runs (no sign-in needed: the sign-in page shows
    the version too)."""
    return p.About(site=setup.site, site_version=setup.site_version, site_build=build.build_id())


NO_BUILD = (
    "The site runs the code installed with the appliance and has no console build to "
    "serve; install the access console of version {version} from the site's release."
)


@router.get(
    "/build",
    response_model=p.ConsoleBuild,
    responses=errors(
        401, 403, 404, e404="the appliance runs the code it was installed with: no build."
    ),
)
async def console_build(
    runtime: RuntimeDep, setup: SetupDep, current: ConsoleDep
) -> p.ConsoleBuild:
    """The site's build of the console, for a console of another version to upgrade to."""
    found = await asyncio.to_thread(jump_clients.site_build, runtime.settings.data_dir)
    if found is None:
        raise NotFoundError(NO_BUILD.format(version=setup.site_version))
    path = f"{p.CONSOLE_API}/build/{found.sha256}"
    return p.ConsoleBuild(version=found.version, sha256=found.sha256, size=found.size, path=path)


@router.get("/build/{sha256}", response_class=FileResponse, include_in_schema=False)
async def download_console_build(
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
    runtime: RuntimeDep,
    current: ConsoleDep,
) -> FileResponse:
    """The build's bytes (the same wheel Jump Clients fetch), to a signed-in console."""
    found = await asyncio.to_thread(jump_clients.site_build, runtime.settings.data_dir)
    if found is None or found.sha256 != sha256:
        raise NotFoundError("The site serves no console build with this digest now.")
    return FileResponse(
        found.path,
        media_type="application/octet-stream",
        headers={"Cache-Control": "no-store"},
    )


@router.get("/jump-items", response_model=list[p.JumpItem], responses=errors(401, 403))
def jump_items(setup: SetupDep, uow: UowDep, current: ConsoleDep) -> list[p.JumpItem]:
    """The Jump Items this person may use (Jump Clients, and SSH Jump Items through
    Jumpoints: `kind`); `jumpable` says whether a jump can start now."""
    views = service.jump_items(uow, setup, current.principal)
    return [p.JumpItem.model_validate(v, from_attributes=True) for v in views]


@router.post(
    "/sessions",
    response_model=p.SessionOpened,
    status_code=201,
    responses=errors(
        401,
        403,
        404,
        409,
        503,
        e403="the Jump Item's Jump Group is not granted to this person.",
        e404="there is no Jump Item of this kind with this id.",
        e409="the Jump Client (or the SSH Jump Item's Jumpoint) is offline, lost, revoked, "
        "waiting for its upgrade (it is then "
        "moved to the front of the upgrade queue), on a version without sessions, or not "
        "connected; or the licence's count of representatives or endpoints in sessions is "
        "reached (the message names the count and who holds it).",
        e503="no Jump Client gateway runs on this appliance.",
    ),
)
async def open_session(
    body: p.OpenSession,
    request: Request,
    runtime: RuntimeDep,
    setup: SetupDep,
    rendezvous: RendezvousDep,
    current: ConsoleDep,
) -> p.SessionOpened:
    """Open a session: the answer's token goes in the `console_hello` on `terminal_path`
    within 60 s; the Jump Client is told to connect back meanwhile."""
    actor = Actor(current.principal, source_of(request))
    return await start_session(runtime, setup, rendezvous, actor, body)


async def start_session(
    runtime: Runtime,
    setup: JumpClientsSetup,
    rendezvous: Rendezvous,
    actor: Actor,
    body: p.OpenSession,
) -> p.SessionOpened:
    """Opening a session, for the access console and the web console alike: the record
    (every refusal with its reason), then the Jump Client told to connect back."""
    plan = await asyncio.to_thread(_open, runtime, setup, actor, body)
    title = f"{actor.name} on {plan.seat.client_name}"
    tickets = await rendezvous.open(plan, title, body.cols, body.rows)
    return p.SessionOpened(
        session_id=plan.session_id,
        terminal_path=f"{p.CONSOLE_API}/sessions/{plan.session_id}/terminal",
        token=tickets.console_token,
    )


def _open(
    runtime: Runtime, setup: JumpClientsSetup, actor: Actor, body: p.OpenSession
) -> service.SessionPlan:
    with runtime.uow() as uow:
        if body.kind == "ssh":
            vault = runtime.part(JumpointsSetup)
            plan = service.open_ssh_session(uow, setup, vault, actor, body.jump_item_id)
        else:
            plan = service.open_session(uow, setup, actor, body.jump_item_id)
        uow.commit()
        return plan
