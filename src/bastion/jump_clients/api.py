"""Jump Clients in the JSON API: the list, edits, revocation, installers, settings, and the
registration an installed client makes with its installer."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from functools import partial
from typing import Annotated

from fastapi import Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse

from bastion.accounts.deps import ApiActorDep
from bastion.jump_clients import fleet, rules, service, upgrades
from bastion.jump_clients import schemas as s
from bastion.jump_clients.builds import check_token, stream
from bastion.jump_clients.fleet import GatewayFleet, Rollout
from bastion.jump_clients.repository import ClientFilter
from bastion.jump_clients.service import JumpClientsSetup
from bastion.platform.errors import AuthenticationError, InvalidInputError, NotFoundError
from bastion.platform.web.deps import RuntimeDep, UowDep, part, source_of
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import RowId, errors
from bastion.platform.web.streaming import GuardedStream

router = Router(prefix="/api/v1/jump-clients", tags=["jump clients"])
SetupDep = Annotated[JumpClientsSetup, Depends(part(JumpClientsSetup))]
LABELS = "a name, group, tag or comment is too long or not printable text."


def _installer(view: service.InstallerView) -> s.InstallerOut:
    return s.InstallerOut.model_validate(view, from_attributes=True)


@router.get("/installers", response_model=list[s.InstallerOut])
def list_installers(setup: SetupDep, uow: UowDep, actor: ApiActorDep) -> list[s.InstallerOut]:
    return [_installer(v) for v in service.list_installers(uow, setup)]


@router.post(
    "/installers",
    response_model=s.InstallerCreated,
    status_code=201,
    responses=errors(
        400,
        409,
        e400=LABELS,
        e409="the appliance holds no release of that site version ready to install.",
    ),
)
def make_installer(
    body: s.InstallerCreate, response: Response, setup: SetupDep, uow: UowDep, actor: ApiActorDep
) -> s.InstallerCreated:
    """The installer file is in the answer, once: keep it like a password until it is used.
    `site_version` may name a later site version whose release the appliance holds: its
    clients wait, offline, until the site runs it (R11)."""
    made = service.make_installer(uow, setup, actor, service.InstallerRequest(**body.model_dump()))
    uow.commit()
    response.headers["Cache-Control"] = "no-store"
    out = _installer(made.installer)
    return s.InstallerCreated(**out.model_dump(), installer=made.file.decode())


@router.get(
    "/installers/builds/{version}",
    response_class=FileResponse,
    responses=errors(404, e404="the appliance holds no build of this site version."),
)
def installer_build(
    version: Annotated[str, Path(max_length=64)],
    runtime: RuntimeDep,
    setup: SetupDep,
    uow: UowDep,
    actor: ApiActorDep,
) -> FileResponse:
    """The `bastion` wheel that Jump Clients, Jumpoints and access consoles of this site
    version run: the site's own, or a later release's held ahead of its install, to put on
    endpoints with that version's installers (R11)."""
    found = service.installer_build(uow, setup, runtime.settings.data_dir, version)
    return FileResponse(
        found.path,
        media_type="application/octet-stream",
        filename=f"bastion-{found.version}-py3-none-any.whl",
        headers={"Cache-Control": "no-store", "X-Content-SHA256": found.sha256},
    )


@router.delete(
    "/installers/{installer_id:int}", response_model=s.InstallerOut, responses=errors(404)
)
def revoke_installer(
    installer_id: RowId, setup: SetupDep, uow: UowDep, actor: ApiActorDep
) -> s.InstallerOut:
    revoked = service.revoke_installer(uow, setup, actor, installer_id)
    uow.commit()
    return _installer(revoked)


@router.post(
    "/register",
    response_model=s.JumpClientOut,
    status_code=201,
    responses=errors(
        400,
        401,
        409,
        e400="the public key is not base64 of 32 bytes, or a label is not printable.",
        e401="the installer is expired, revoked, for another site or version, or altered; "
        "nothing was registered.",
        e409="the installer is for a later site version than the site runs (type "
        "SiteNotYetUpgradedError: the client waits and tries again); or this endpoint's key "
        "is registered already and the registration did not prove it holds the key, or that "
        "client was revoked or deleted.",
    ),
)
def register(
    body: s.RegistrationIn, request: Request, setup: SetupDep, uow: UowDep
) -> service.JumpClientView:
    """An installed client registers its public key with its installer's token."""
    claims = rules.InstallerClaims(
        body.site, body.site_version, body.mode, body.jump_group, body.tag, body.kind
    )
    registration = service.Registration(
        token=body.token,
        claims=claims,
        public_key=_public_key(body.public_key),
        endpoint=service.Endpoint(**body.endpoint.model_dump()),
        agent_version=body.agent_version,
        anchors=tuple(body.anchors),
        wake_port=body.wake_port,
        proof=_base64(body.proof, "proof"),
    )
    registered = service.register(uow, setup, registration, source_of(request))
    uow.commit()
    return registered


def _public_key(text: str) -> bytes:
    return _base64(text, "public_key")


def _base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"{what} is not base64; send its bytes encoded.") from None


@router.get("/settings", response_model=s.FleetSettingsBody)
def get_settings(uow: UowDep, actor: ApiActorDep) -> rules.FleetSettings:
    return service.settings(uow)


@router.put("/settings", response_model=s.FleetSettingsBody, responses=errors(400))
def set_settings(body: s.FleetSettingsBody, uow: UowDep, actor: ApiActorDep) -> rules.FleetSettings:
    chosen = service.set_settings(uow, actor, rules.FleetSettings(**body.model_dump()))
    uow.commit()
    return chosen


@router.get("/fleet", response_model=s.FleetProgressOut)
def fleet_progress(setup: SetupDep, uow: UowDep, actor: ApiActorDep) -> upgrades.Progress:
    """How far the fleet is on its upgrade to the site's version (R20)."""
    return upgrades.progress(uow, setup.site_version)


@router.post("/fleet/resume", response_model=s.FleetProgressOut)
def resume_rollout(
    body: s.ResumeIn, setup: SetupDep, uow: UowDep, actor: ApiActorDep
) -> upgrades.Progress:
    """Resume a halted rollout; `retry_failed` lets the clients that failed try again."""
    upgrades.resume(uow, actor, setup.site_version, body.retry_failed)
    uow.commit()
    return upgrades.progress(uow, setup.site_version)


@router.get("/builds/{sha256}", response_class=GuardedStream, include_in_schema=False)
async def download_build(
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
    runtime: RuntimeDep,
    token: Annotated[str, Query(max_length=300)] = "",
) -> GuardedStream:
    """A Jump Client fetches the site's build with the token its upgrade order carried.
    One that stops reading is cut off after `build_stall_seconds`, and its upgrade
    fails (its place goes to the next client)."""
    rollout = runtime.maybe(Rollout)
    build = None if rollout is None else await asyncio.to_thread(rollout.build)
    if rollout is None or build is None or build.sha256 != sha256:
        raise NotFoundError("The site serves no Jump Client build with this digest now.")
    client_id = check_token(rollout.fleet.wake_secret, token, sha256, time.time())
    if client_id is None:
        raise AuthenticationError(
            "The download token is not valid (or expired); the site sends a new one."
        )
    headers = {"Content-Length": str(build.size), "Cache-Control": "no-store"}
    return GuardedStream(
        stream(build, rollout.bandwidth),
        runtime.settings.build_stall_seconds,
        partial(rollout.download_stalled, client_id),
        headers=headers,
    )


@router.get("/duplicates", response_model=list[list[s.JumpClientOut]])
def duplicates(
    setup: SetupDep, uow: UowDep, actor: ApiActorDep
) -> list[list[service.JumpClientView]]:
    return service.duplicates(uow, setup)


@router.get("", response_model=s.JumpClientPage)
def list_clients(
    setup: SetupDep,
    uow: UowDep,
    actor: ApiActorDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    name: Annotated[str | None, Query(max_length=200)] = None,
    hostname: Annotated[str | None, Query(max_length=255)] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    group: Annotated[str | None, Query(max_length=100)] = None,
    mode: rules.Mode | None = None,
    status: rules.Status | None = None,
    version: Annotated[str | None, Query(max_length=64)] = None,
) -> s.JumpClientPage:
    wanted = ClientFilter(
        name, hostname, tag, group, mode and mode.value, version, status and status.value
    )
    page = service.list_clients(uow, setup, wanted, limit, offset)
    clients = [s.JumpClientOut.model_validate(v, from_attributes=True) for v in page.clients]
    return s.JumpClientPage(total=page.total, clients=clients)


@router.get("/{row_id:int}", response_model=s.JumpClientOut, responses=errors(404))
def get_client(
    row_id: RowId, setup: SetupDep, uow: UowDep, actor: ApiActorDep
) -> service.JumpClientView:
    return service.get_client(uow, setup, row_id)


@router.patch(
    "/{row_id:int}", response_model=s.JumpClientOut, responses=errors(400, 404, e400=LABELS)
)
def edit_client(
    row_id: RowId, body: s.JumpClientEdit, setup: SetupDep, uow: UowDep, actor: ApiActorDep
) -> service.JumpClientView:
    edited = service.edit_client(uow, setup, actor, row_id, service.ClientEdit(**body.model_dump()))
    uow.commit()
    return edited


@router.post("/{row_id:int}/revoke", response_model=s.JumpClientOut, responses=errors(404))
async def revoke_client(
    row_id: RowId, runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep
) -> service.JumpClientView:
    """Refused from now on; a connected client is dropped at once."""
    return await fleet.revoke_client(runtime, uow, actor, row_id)


@router.post(
    "/{row_id:int}/wake",
    response_model=s.WakeOut,
    responses=errors(
        404,
        409,
        503,
        e409="the client is active, revoked, or has no wake port.",
        e503="no gateway runs here, or the client cannot be reached.",
    ),
)
async def wake_client(
    row_id: RowId, runtime: RuntimeDep, setup: SetupDep, uow: UowDep, actor: ApiActorDep
) -> s.WakeOut:
    """Ask a passive client to check in now, on the port it listens on for wakes."""

    def targeted() -> service.WakeTarget:
        target = service.wake_target(uow, setup, actor, row_id)
        uow.commit()
        return target

    target = await asyncio.to_thread(targeted)  # the database is not reached from the loop
    answer = await service.wake(runtime.maybe(GatewayFleet), target)
    return s.WakeOut(answer=answer)


@router.delete("/{row_id:int}", response_model=s.JumpClientOut, responses=errors(404))
async def delete_client(
    row_id: RowId, runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep
) -> service.JumpClientView:
    """The client uninstalls itself at once if connected, else at its next contact; its
    record goes then."""
    return await fleet.delete_client(runtime, uow, actor, row_id)
