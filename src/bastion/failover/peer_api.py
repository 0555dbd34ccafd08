"""What one appliance of a pair answers the other (not part of the public API): the
key's challenge and response, then, with the ticket that earns, joining a pair, and
what the backup pulls (snapshot, changes, blobs), what the primary takes from a
would-be backup before it joins (its ended sessions and their recordings), or what a
backup is asked to do (sync now, leave the pair when the other broke it)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Depends, Header, Query
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from starlette.background import BackgroundTask
from starlette.responses import FileResponse

from bastion.failover import blobs, rules, swap
from bastion.failover import merge as merging
from bastion.failover import schemas as s
from bastion.failover import service as failover
from bastion.failover import sync as pulling
from bastion.failover import upgrade as upgrading
from bastion.failover.api import FailoverDep, failover_out
from bastion.failover.peer import PEER_PREFIX, TICKET_HEADER
from bastion.failover.rules import PeerAddress
from bastion.platform.principals import Actor, Principal, Role
from bastion.platform.web.deps import UowDep, part
from bastion.platform.web.routing import Router

router = Router(prefix=PEER_PREFIX, include_in_schema=False)


def peer_actor(
    setup: FailoverDep,
    ticket: Annotated[str, Header(alias=TICKET_HEADER, max_length=200)] = "",
) -> Actor:
    failover.check_ticket(setup, ticket)
    return Actor(Principal("appliance:failover-peer", Role.ADMINISTRATOR), "failover peer")


PeerDep = Annotated[Actor, Depends(peer_actor)]


class BlobFile(FileResponse):
    """A blob for the peer, read 1 MiB at a time: each read is a hop to a worker thread,
    and at Starlette's 64 KiB those hops, not the disk or TLS, bounded a bulk sync."""

    chunk_size = 1024 * 1024


@router.post("/challenge")
def challenge(setup: FailoverDep) -> dict[str, str]:
    return {"challenge": failover.challenge(setup), "binding": rules.BINDING}


@router.post("/prove")
def prove(body: s.ProveIn, setup: FailoverDep) -> dict[str, Any]:
    proof, ticket = failover.prove(setup, failover.Proof(**body.model_dump()))
    return {
        "proof": proof,
        "ticket": ticket,
        "version": setup.version,
        "time": time.time(),
        "role": setup.pair().role.value,
        "appliance": setup.appliance_id(),
    }


@router.post("/join", response_model=s.FailoverOut)
async def join(body: s.JoinIn, setup: FailoverDep, uow: UowDep, actor: PeerDep) -> s.FailoverOut:
    def work() -> s.FailoverOut:
        failover.join(uow, setup, actor, PeerAddress(body.host.strip(), body.port))
        uow.commit()
        return failover_out(setup)

    return await run_in_threadpool(work)


@router.get("/snapshot", dependencies=[Depends(peer_actor)])
async def snapshot(setup: FailoverDep) -> FileResponse:
    sync = failover.sync_site(setup)
    path, epoch, position = await run_in_threadpool(pulling.serve_snapshot, sync, setup.pair())
    headers = {pulling.EPOCH_HEADER: epoch, pulling.POSITION_HEADER: str(position)}
    done = BackgroundTask(path.unlink, missing_ok=True)
    return FileResponse(
        path, media_type="application/octet-stream", headers=headers, background=done
    )


@router.post("/changes", dependencies=[Depends(peer_actor)])
async def changes(body: s.ChangesIn, setup: FailoverDep) -> dict[str, Any]:
    sync, pair = failover.sync_site(setup), setup.pair()
    return await run_in_threadpool(pulling.serve_changes, sync, pair, body.epoch, body.since)


@router.get("/blobs", dependencies=[Depends(peer_actor)])
def blob_list(setup: FailoverDep) -> dict[str, Any]:
    pulling.require_primary(setup.pair())
    return {"blobs": blobs.listed(failover.sync_site(setup).blobs_dir)}


@router.get("/blobs/{sha256}", dependencies=[Depends(peer_actor)])
def blob(
    setup: FailoverDep, sha256: Annotated[str, PathParam(pattern="^[0-9a-f]{64}$")]
) -> FileResponse:
    path = pulling.blob_file(failover.sync_site(setup), setup.pair(), sha256)
    return BlobFile(path, media_type="application/octet-stream")


@router.get("/sessions", dependencies=[Depends(peer_actor)])
def merge_sessions(
    setup: FailoverDep,
    after: Annotated[str, Query(max_length=36)] = "",
    limit: Annotated[int, Query(ge=1, le=merging.PAGE)] = merging.PAGE,
) -> dict[str, Any]:
    """On the would-be backup: its ended sessions, for the primary to merge (R32)."""
    return merging.serve_sessions(failover.sync_site(setup), setup.pair(), after, limit)


@router.get("/sessions/recordings/{sha256}", dependencies=[Depends(peer_actor)])
def merge_recording(
    setup: FailoverDep, sha256: Annotated[str, PathParam(pattern="^[0-9a-f]{64}$")]
) -> FileResponse:
    path = merging.recording_file(failover.sync_site(setup), setup.pair(), sha256)
    return BlobFile(path, media_type="application/octet-stream")


@router.post("/sync", response_model=s.FailoverOut)
async def sync_now(setup: FailoverDep, uow: UowDep, actor: PeerDep) -> s.FailoverOut:
    def work() -> s.FailoverOut:
        failover.sync_now(uow, setup, actor)
        uow.commit()
        return failover_out(setup)

    return await run_in_threadpool(work)


@router.post("/leave", response_model=s.FailoverOut)
async def leave(setup: FailoverDep, uow: UowDep, actor: PeerDep) -> s.FailoverOut:
    def work() -> s.FailoverOut:
        failover.leave(uow, setup, actor)
        uow.commit()
        return failover_out(setup)

    return await run_in_threadpool(work)


@router.post("/demote", response_model=s.FailoverOut)
async def demote(setup: FailoverDep, uow: UowDep, actor: PeerDep) -> s.FailoverOut:
    def work() -> s.FailoverOut:
        swap.demote(uow, setup, actor)
        uow.commit()
        return failover_out(setup)

    return await run_in_threadpool(work)


@router.post("/promote", response_model=s.FailoverOut)
async def promote(setup: FailoverDep, uow: UowDep, actor: PeerDep) -> s.FailoverOut:
    def work() -> s.FailoverOut:
        swap.promote(uow, setup, actor)
        uow.commit()
        return failover_out(setup)

    return await run_in_threadpool(work)


# -- the pair's upgrade runbook, asked of the other appliance (failover/upgrade.py) -----------

UpgradeDep = Annotated[upgrading.UpgradeSetup, Depends(part(upgrading.UpgradeSetup))]


@router.post("/upgrade/prepare")
async def upgrade_prepare(
    body: s.UpgradePrepareIn, setup: FailoverDep, upgrade: UpgradeDep, actor: PeerDep
) -> dict[str, Any]:
    """Ready to install the releases (downloaded if missing), and how this appliance
    reaches the one that asks."""
    return await run_in_threadpool(
        upgrading.prepare_here, setup, upgrade.installer, actor, body.releases
    )


@router.post("/upgrade/install")
async def upgrade_install(
    body: s.UpgradeInstallIn, upgrade: UpgradeDep, actor: PeerDep
) -> dict[str, Any]:
    accepted = upgrading.Accepted(body.accept_licence, body.accept_offline_clients)
    install_id = await run_in_threadpool(upgrade.installer.install, body.releases, accepted, actor)
    return {"install_id": install_id}


@router.get("/upgrade/status", dependencies=[Depends(peer_actor)])
def upgrade_status(
    setup: FailoverDep,
    upgrade: UpgradeDep,
    install_id: Annotated[str, Query(max_length=64)] = "",
) -> dict[str, Any]:
    """The site and base versions this appliance runs, and how an install it was asked
    for ended."""
    answer: dict[str, Any] = {
        "version": setup.version,
        "base_version": upgrade.installer.base_version(),
        "role": setup.pair().role.value,
    }
    if install_id:
        answer["state"], answer["finished"] = upgrade.installer.outcome(install_id)
    return answer


@router.post("/upgrade/verify", dependencies=[Depends(peer_actor)])
async def upgrade_verify(setup: FailoverDep, upgrade: UpgradeDep) -> dict[str, Any]:
    about = await run_in_threadpool(upgrade.installer.verify)
    return {
        "version": setup.version,
        "base_version": upgrade.installer.base_version(),
        "about": about,
    }


@router.post("/upgrade/take-site")
async def upgrade_take_site(setup: FailoverDep, uow: UowDep, actor: PeerDep) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        detail = upgrading.take_site(uow, setup, actor)
        uow.commit()
        return {"detail": detail}

    return await run_in_threadpool(work)


@router.post("/upgrade/establish", response_model=s.FailoverOut)
async def upgrade_establish(
    body: s.UpgradeEstablishIn, setup: FailoverDep, uow: UowDep, actor: PeerDep
) -> s.FailoverOut:
    """Asked by the runbook once both run the new version (async mode): establish the
    pair from here, with the asking appliance as the backup."""

    def work() -> s.FailoverOut:
        request = failover.EstablishRequest(
            PeerAddress(body.backup.host.strip(), body.backup.port),
            PeerAddress(body.reverse.host.strip(), body.reverse.port),
        )
        failover.establish(uow, setup, actor, request)
        uow.commit()
        return failover_out(setup)

    return await run_in_threadpool(work)
