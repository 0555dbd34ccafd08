"""Failover through the API: the inter-appliance key, the pair's state, establishing,
Sync Now and breaking the pair."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import Depends
from fastapi.concurrency import run_in_threadpool

from bastion.accounts.deps import ApiActorDep
from bastion.failover import dns_swing, state, swap
from bastion.failover import schemas as s
from bastion.failover import service as failover
from bastion.failover import sync as pulling
from bastion.failover import upgrade as upgrading
from bastion.failover.rules import PeerAddress, Role
from bastion.failover.service import EstablishRequest, FailoverSetup
from bastion.platform.errors import NotFoundError
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.deps import UowDep, part
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import errors

router = Router(prefix="/api/v1/failover", tags=["failover"])
FailoverDep = Annotated[FailoverSetup, Depends(part(FailoverSetup))]


def failover_out(setup: FailoverSetup) -> s.FailoverOut:
    pair = setup.pair()
    peer = pair.peer
    checked = state.read_status(setup.state_dir) if pair.role is not Role.NONE else None
    return s.FailoverOut(
        failover_role=pair.role.value,
        key_set=setup.keys.path.exists(),
        peer=s.PeerOut(host=peer.host, port=peer.port, fingerprint=peer.fingerprint)
        if peer
        else None,
        established_at=pair.established_at,
        role_since=pair.role_since,
        last_data_sync_time=pair.last_sync_time,
        last_data_sync_status=pair.last_sync_status,
        split_brain=checked is not None and checked.status == swap.SPLIT_BRAIN,
        peer_status=s.PeerStatusOut(
            checked_at=checked.checked_at,
            status=checked.status,
            peer_role=checked.peer_role,
            message=checked.message,
            history=[s.PeerStatusEntry(**entry) for entry in checked.history],
        )
        if checked is not None and checked.checked_at
        else None,
        shared_ips=[str(item) for item in setup.shared_ips],
        dns_swing=_dns_swing_out(setup),
    )


def _dns_swing_out(setup: FailoverSetup) -> s.DnsSwingOut | None:
    swing = setup.dns_swing
    if swing is None:
        return None
    last = dns_swing.read_status(setup.state_dir)
    return s.DnsSwingOut(
        name=swing.name.to_text(omit_final_dot=True),
        address=str(swing.addresses[0]),
        addresses=[str(a) for a in swing.addresses],
        server=f"{swing.server}:{swing.port}",
        ttl=swing.ttl,
        last_update_at=last.at if last else "",
        last_update_ok=last.ok if last else None,
        message=last.message if last else "",
    )


@router.get("", response_model=s.FailoverOut)
def get_failover(setup: FailoverDep, actor: ApiActorDep) -> s.FailoverOut:
    return failover_out(setup)


@router.put(
    "/key",
    status_code=204,
    responses=errors(
        400, e400="the key has leading or trailing spaces, or characters that do not print."
    ),
)
def set_key(body: s.KeyIn, setup: FailoverDep, uow: UowDep, actor: ApiActorDep) -> None:
    """The inter-appliance key (the same on both appliances); it is stored sealed and never
    sent: the appliances prove to each other that they hold it."""
    failover.set_key(uow, setup, actor, body.key)
    uow.commit()


def _establish(
    uow: UnitOfWork, setup: FailoverSetup, actor: Actor, body: s.EstablishIn
) -> s.EstablishedOut:
    request = EstablishRequest(
        PeerAddress(body.backup_host.strip(), body.backup_port),
        PeerAddress(body.reverse_host.strip(), body.reverse_port),
    )
    merged = failover.establish(uow, setup, actor, request).merged
    uow.commit()
    return s.EstablishedOut(
        **failover_out(setup).model_dump(), merged=s.MergedOut(**asdict(merged))
    )


@router.post(
    "/establish",
    response_model=s.EstablishedOut,
    responses=errors(
        400,
        409,
        e400="a host is not a hostname or IP address, or is the shared site hostname.",
        e409="the backup is unreachable, holds another inter-appliance key, runs another "
        "version, its clock is off, it cannot reach this appliance at the reverse address, "
        "or its sessions cannot be merged here (some still in progress, a recording damaged).",
    ),
)
async def establish(
    body: s.EstablishIn, setup: FailoverDep, uow: UowDep, actor: ApiActorDep
) -> s.EstablishedOut:
    """From the intended primary: make the appliance at `backup_host:backup_port` its
    backup, which reaches this one back at `reverse_host:reverse_port`. The sessions it
    completed while standalone are merged here first (`merged`)."""
    return await run_in_threadpool(_establish, uow, setup, actor, body)


def _sync_now(uow: UnitOfWork, setup: FailoverSetup, actor: Actor) -> s.FailoverOut:
    failover.sync_now(uow, setup, actor)
    uow.commit()
    return failover_out(setup)


@router.post(
    "/sync",
    response_model=s.FailoverOut,
    responses=errors(
        409,
        e409="this appliance is in no pair, or the sync did not finish (the message says "
        "why; what was applied stays and the next sync goes on from there).",
    ),
)
async def sync_now(setup: FailoverDep, uow: UowDep, actor: ApiActorDep) -> s.FailoverOut:
    """Sync Now: the backup pulls the primary's changes and blobs; answers once done."""
    return await run_in_threadpool(_sync_now, uow, setup, actor)


def _break(uow: UnitOfWork, setup: FailoverSetup, actor: Actor) -> s.BrokenOut:
    left_as_is = failover.break_pair(uow, setup, actor)
    uow.commit()
    return s.BrokenOut(
        failover_role=setup.pair().role.value, peer_told=not left_as_is, message=left_as_is
    )


@router.post(
    "/break",
    response_model=s.BrokenOut,
    responses=errors(409, e409="this appliance is in no pair."),
)
async def break_pair(setup: FailoverDep, uow: UowDep, actor: ApiActorDep) -> s.BrokenOut:
    """Break Failover Relationship: both appliances become standalone (the peer if it can
    be reached; if not, `message` says to break the pair there too)."""
    return await run_in_threadpool(_break, uow, setup, actor)


SWAP_409 = (
    "this appliance is in no pair or already has that role, the sync first did not finish, "
    "or the peer could not be reached (nothing changed; `force` changes this appliance's "
    "role anyway)."
)


def _become(
    uow: UnitOfWork, setup: FailoverSetup, actor: Actor, body: s.SwapIn, role: Role
) -> s.FailoverOut:
    use_case = swap.become_primary if role is Role.PRIMARY else swap.become_backup
    use_case(uow, setup, actor, body.sync_first, body.force)
    uow.commit()
    return failover_out(setup)


@router.post("/become-primary", response_model=s.FailoverOut, responses=errors(409, e409=SWAP_409))
async def become_primary(
    body: s.SwapIn, setup: FailoverDep, uow: UowDep, actor: ApiActorDep
) -> s.FailoverOut:
    """On the backup: take over as the primary; the primary steps down first (and its
    shared IP addresses move here)."""
    return await run_in_threadpool(_become, uow, setup, actor, body, Role.PRIMARY)


@router.post("/become-backup", response_model=s.FailoverOut, responses=errors(409, e409=SWAP_409))
async def become_backup(
    body: s.SwapIn, setup: FailoverDep, uow: UowDep, actor: ApiActorDep
) -> s.FailoverOut:
    """On the primary: step down and have the backup take over."""
    return await run_in_threadpool(_become, uow, setup, actor, body, Role.BACKUP)


def _fix(uow: UnitOfWork, setup: FailoverSetup, actor: Actor) -> s.FailoverOut:
    swap.fix_split_brain(uow, setup, actor)
    uow.commit()
    return failover_out(setup)


@router.post(
    "/fix-split-brain",
    response_model=s.FailoverOut,
    responses=errors(409, e409="there is no split brain, or the peer cannot be reached."),
)
async def fix_split_brain(setup: FailoverDep, uow: UowDep, actor: ApiActorDep) -> s.FailoverOut:
    """Both appliances claim the same role: this one's data wins. It is (or becomes) the
    primary, and the peer becomes its backup and reloads this one's data."""
    return await run_in_threadpool(_fix, uow, setup, actor)


@router.get("/settings", response_model=s.SyncSettingsBody)
def get_settings(uow: UowDep, actor: ApiActorDep) -> s.SyncSettingsBody:
    return s.SyncSettingsBody(sync_interval_seconds=pulling.interval_seconds(uow))


@router.put(
    "/settings",
    response_model=s.SyncSettingsBody,
    responses=errors(409, e409="this appliance is the backup (set it on the primary)."),
)
def put_settings(
    body: s.SyncSettingsBody, setup: FailoverDep, uow: UowDep, actor: ApiActorDep
) -> s.SyncSettingsBody:
    """The site's sync interval: how often the backup pulls the primary's changes."""
    seconds = failover.set_sync_interval(uow, setup, actor, body.sync_interval_seconds)
    uow.commit()
    return s.SyncSettingsBody(sync_interval_seconds=seconds)


def site_check_out(checked: swap.SiteCheck) -> s.SiteCheckOut:
    return s.SiteCheckOut(
        url=checked.url,
        reached=checked.role is not None,
        failover_role=checked.role,
        leads_to_primary=checked.leads_to_primary,
        certificate_sha256=checked.certificate_sha256,
        message=checked.message,
    )


@router.post("/site-check", response_model=s.SiteCheckOut)
async def site_check(setup: FailoverDep, actor: ApiActorDep) -> s.SiteCheckOut:
    """Where the site's public address leads now: after a NAT or DNS swing it must lead to
    the new primary (`leads_to_primary`)."""
    return site_check_out(await run_in_threadpool(swap.check_site_address, setup))


# -- the pair's upgrade runbook (failover/upgrade.py) -----------------------------------------

UpgradeDep = Annotated[upgrading.UpgradeSetup, Depends(part(upgrading.UpgradeSetup))]


def upgrade_out(setup: FailoverSetup) -> s.UpgradeOut:
    runbook = upgrading.read(setup.state_dir)
    if runbook is None:
        raise NotFoundError("No upgrade of the pair has been started on this appliance.")
    return s.UpgradeOut.of(upgrading.report(runbook))


@router.get(
    "/upgrade",
    response_model=s.UpgradeOut,
    responses=errors(404, e404="no upgrade of the pair was started here."),
)
def get_upgrade(setup: FailoverDep, actor: ApiActorDep) -> s.UpgradeOut:
    """The pair's upgrade: each step with its state and time, and where it stopped (the
    report, once done)."""
    return upgrade_out(setup)


def _start_upgrade(
    uow: UnitOfWork,
    setup: FailoverSetup,
    upgrade: upgrading.UpgradeSetup,
    actor: Actor,
    body: s.UpgradeIn,
) -> s.UpgradeOut:
    request = upgrading.UpgradeRequest(
        body.releases,
        upgrading.Mode(body.mode),
        body.backup_passphrase,
        body.accept_licence,
        body.accept_offline_clients,
    )
    upgrading.start(uow, setup, upgrade.installer, actor, request)
    uow.commit()
    upgrading.run_in_background(setup, upgrade.installer, upgrade.uow, actor)
    return upgrade_out(setup)


@router.post(
    "/upgrade",
    status_code=202,
    response_model=s.UpgradeOut,
    responses=errors(
        400,
        404,
        409,
        e400="a release name that is blank, or a passphrase refused for backups.",
        e404="a release is not offered to one of the appliances; check for updates.",
        e409="the preflight failed (the message lists every problem: not the primary of a "
        "pair, the backup unreachable or on another version, clocks off, the last sync "
        "failed or old, too little disk, a licence or offline Jump Clients not accepted), "
        "or an upgrade is already under way.",
    ),
)
async def start_upgrade(
    body: s.UpgradeIn,
    setup: FailoverDep,
    upgrade: UpgradeDep,
    uow: UowDep,
    actor: ApiActorDep,
) -> s.UpgradeOut:
    """From the primary: upgrade both appliances of the pair (R35). Answers once the
    preflight passed and the backup is written; the steps after go on by themselves
    (follow them with `GET`)."""
    return await run_in_threadpool(_start_upgrade, uow, setup, upgrade, actor, body)


@router.post(
    "/upgrade/stop",
    response_model=s.UpgradeOut,
    responses=errors(404, 409, e404="no upgrade was started here.", e409="it is not running."),
)
def stop_upgrade(setup: FailoverDep, actor: ApiActorDep) -> s.UpgradeOut:
    """Stop before the next step (a step under way, such as an install, finishes)."""
    try:
        upgrading.stop(setup)
    except upgrading.NoRunbookError as error:
        raise NotFoundError(str(error)) from None
    return upgrade_out(setup)


@router.post(
    "/upgrade/resume",
    status_code=202,
    response_model=s.UpgradeOut,
    responses=errors(404, 409, e404="no upgrade was started here.", e409="it is running or done."),
)
def resume_upgrade(setup: FailoverDep, upgrade: UpgradeDep, actor: ApiActorDep) -> s.UpgradeOut:
    """Go on from the step that stopped or failed."""
    try:
        upgrading.resume(setup)
    except upgrading.NoRunbookError as error:
        raise NotFoundError(str(error)) from None
    upgrading.run_in_background(setup, upgrade.installer, upgrade.uow, actor)
    return upgrade_out(setup)


@router.delete(
    "/upgrade",
    status_code=204,
    responses=errors(404, 409, e404="no upgrade was started here.", e409="it is running."),
)
def forget_upgrade(setup: FailoverDep, actor: ApiActorDep) -> None:
    """Forget a finished, stopped or failed upgrade (its backup file stays)."""
    try:
        upgrading.forget(setup)
    except upgrading.NoRunbookError as error:
        raise NotFoundError(str(error)) from None
