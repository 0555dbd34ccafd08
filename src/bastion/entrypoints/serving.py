"""Start an appliance: initialise the data directory once, then serve until told to stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
import uuid
from dataclasses import dataclass, replace
from functools import partial

import anyio
from fastapi import FastAPI
from rich.console import Console

from bastion.accounts import service as accounts
from bastion.accounts.rules import FIRST_LOGIN_PASSWORD, FIRST_LOGIN_USERNAME
from bastion.accounts.service import AccountsSetup
from bastion.appliance.service import ApplianceControl
from bastion.backups import schedule as backup_schedule
from bastion.backups.schedule import Sealer
from bastion.backups.service import BackupSite
from bastion.certificates import tls
from bastion.certificates.site import SiteCertificates
from bastion.entrypoints import compose
from bastion.entrypoints.web import create_app, served
from bastion.entrypoints.worker_control import WorkerControl
from bastion.installs import service as installs
from bastion.jump_clients.fleet import GatewayFleet, Rollout
from bastion.jump_clients.store import wake_secret
from bastion.network import service as network
from bastion.network.listeners import UvicornListeners, serve_private, warm_up_servers
from bastion.platform import identity
from bastion.platform.clock import utc_now
from bastion.platform.db.engine import migrate, prepare_migrations, report_statements_on_the_loop
from bastion.platform.principals import Actor, Principal, Role
from bastion.platform.runtime import Runtime
from bastion.platform.settings import ApplianceSettings
from bastion.sessions.relay import Rendezvous
from bastion.supervisor.client import SupervisorClient
from bastion.supervisor.messages import GoLive, Retire, WentLive
from bastion.supervisor.sockets import (
    ListenAddress,
    ListenAddressError,
    ListenError,
    bind,
    parse_listen_address,
)

log = logging.getLogger("bastion.appliance")


class StartupError(Exception):
    """The appliance cannot start; the message says what to fix."""


@dataclass(frozen=True)
class Identity:
    appliance_id: str
    created_at: str
    first_start: bool


def initialise(runtime: Runtime, migrated: bool = False) -> Identity:
    """Bring the data directory to a state that serves; the first time, create the site.

    `migrated`: an install's new worker, begun once that release's migration tool brought
    the schema to its head; it does not check again while changes are paused.
    """
    settings = runtime.settings
    for directory in (settings.data_dir, settings.db_dir, settings.certs_dir, settings.state_dir):
        directory.mkdir(parents=True, exist_ok=True)
    if not migrated:
        migrate(runtime.engine)
    compose.prepare_journal(runtime)
    runtime.part(SiteCertificates).prepare(compose.listen_hosts(settings))
    stored = identity.read(settings.state_dir)
    first_start = stored is None
    if stored is None:
        with runtime.uow() as uow:
            accounts.ensure_first_login(uow, runtime.part(AccountsSetup).hasher)
            uow.commit()
        stored = {"appliance_id": str(uuid.uuid4()), "created_at": utc_now().isoformat()}
    # The hostname is kept so that console commands (`bastion backup`) name the same site.
    stored["hostname"] = settings.hostname
    identity.write(settings.state_dir, stored)  # written last: an interrupted start starts over
    return Identity(stored["appliance_id"], stored["created_at"], first_start)


@dataclass(frozen=True)
class Prepared:
    """The site's wiring and its app, built before any data is touched."""

    runtime: Runtime
    app: FastAPI


def prepare(settings: ApplianceSettings) -> Prepared:
    """Import what serving would import on first use (uvicorn's protocols, anyio's event
    loop backend, Alembic's runtime, the database driver) and build the wiring, the app
    and the API's schema, touching no data: a worker that an install starts early does
    this before it waits to begin, so that it answers its first health check soon after
    it is told to (changes are paused until then). `serve` uses what was built here."""
    warm_up_servers()
    anyio.run(anyio.sleep, 0)  # anyio loads its asyncio backend at first use
    prepare_migrations()
    runtime = compose.build(settings)  # loads the database driver; connects to nothing
    app = create_app(runtime)
    app.openapi()
    return Prepared(runtime, app)


@dataclass(frozen=True)
class Supervised:
    """A worker run by the supervisor: its sockets come from it, its orders on `socket`."""

    client: SupervisorClient
    socket: str
    token: str
    standby: bool


async def serve(prepared: Prepared, console: Console, supervised: Supervised | None = None) -> None:
    """Serve until stopped. A standby worker serves nothing until the supervisor says go."""
    runtime, app = prepared.runtime, prepared.app
    settings = runtime.settings
    me = initialise(runtime, migrated=supervised is not None and supervised.standby)
    ssl_context = tls.server_context(settings.certs_dir)
    runtime.part(SiteCertificates).ssl_context = ssl_context
    if supervised is None:
        listeners = UvicornListeners(ssl_context)
    else:
        client = supervised.client
        listeners = UvicornListeners(ssl_context, client.listen, client.unlisten)
    clock = compose.add_network(runtime, listeners).clock
    listeners.attach(served(app))
    _settle_memory(app, runtime)
    report_statements_on_the_loop(runtime.engine, log)
    runtime.serving = True
    background: list[asyncio.Task[None]] = []
    fleets: list[GatewayFleet] = []

    async def go_live(order: GoLive) -> WentLive:
        """Open the listeners; at an install's switch, end every signed-in session."""
        if background:
            return WentLive(tuple(str(a) for a in listeners.active()))
        addresses = await _open_listeners(runtime, listeners, settings)
        fleets.extend(await _start_gateways(runtime, supervised))
        if fleets:
            rollout = runtime.part(Rollout).run()
            background.append(asyncio.create_task(rollout, name="Jump Client rollout"))
        background.append(asyncio.create_task(clock.run(), name="clock monitor"))
        background.append(asyncio.create_task(_scheduled_backups(runtime), name="backups"))
        background.append(asyncio.create_task(_failover_work(runtime), name="failover"))
        ended = 0
        if order.release:
            ended = await asyncio.to_thread(_end_sessions, runtime, order.release)
        else:  # at an install's switch, `_end_sessions` logs it
            _announce(console, settings, me, addresses)
        return WentLive(tuple(str(a) for a in addresses), ended)

    stop = _stop_event()
    loop = asyncio.get_running_loop()
    keeping = Keeping()

    def retire(order: Retire) -> int:
        """An install replaced this worker: keep its sessions in progress, then stop."""
        keeping.seconds = order.keep_seconds
        listeners.hand_over()  # before the install goes on: the new version serves it all
        stop.set()
        return len(runtime.part(Rendezvous).in_progress())

    private = None
    if supervised is not None:
        control = WorkerControl(
            app,
            runtime,
            supervised.token,
            go_live,
            partial(_audit_install_outcomes, runtime),
            retire,
        )
        private = await serve_private(control, supervised.socket)
        await asyncio.to_thread(_audit_install_outcomes, runtime)

    def request_shutdown() -> None:
        if supervised is not None:
            supervised.client.shutdown()  # the supervisor stops this worker, then itself
        else:
            loop.call_soon_threadsafe(stop.set)

    runtime.request_shutdown = request_shutdown
    runtime.add(replace(runtime.part(ApplianceControl), shut_down=request_shutdown))
    if supervised is None or not supervised.standby:
        await go_live(GoLive())
    await stop.wait()
    runtime.draining = True
    for task in background:
        task.cancel()
    reason = "the appliance is stopping"
    if keeping.seconds > 0:
        stop.clear()  # a SIGTERM now (the appliance stops) ends the sessions kept at once
        reason = await _keep_sessions(runtime, listeners, fleets, keeping.seconds, stop)
    await runtime.part(Rendezvous).end_all(reason)
    # Stop accepting first and answer what was accepted normally: after an install's
    # switch the new worker serves the same sockets, so this worker is not "stopping".
    await listeners.close_all(at_once=keeping.seconds > 0)
    for fleet in fleets:
        await fleet.stop()
    runtime.serving, runtime.stopping = False, True
    if private is not None:
        private[0].should_exit = True
        await private[1]
    runtime.engine.dispose()
    console.print("Bastion appliance stopped.")


@dataclass
class Keeping:
    seconds: float = 0.0
    """Set when an install replaced this worker: how long it may keep its sessions."""


async def _keep_sessions(
    runtime: Runtime,
    listeners: UvicornListeners,
    fleets: list[GatewayFleet],
    seconds: float,
    cut_short: asyncio.Event,
) -> str:
    """A worker replaced by an install keeps the remote sessions in progress here until
    they end, for `seconds` at most: it stops accepting (the new version serves every
    new connection on the same sockets), closes every connection but the sessions'
    WebSockets, hands its Jump Clients to the new version's gateway, and waits. A session
    whose console or Jump Client has not connected yet is kept too: the new version
    relays that end here when it comes (`sessions/kept.py`), and the usual deadlines
    end it if it does not. The reason the sessions still here then end with."""
    rendezvous = runtime.part(Rendezvous)
    await listeners.stop_accepting()
    await listeners.close_idle()
    for fleet in fleets:
        await fleet.stop()
    fleets.clear()
    kept = rendezvous.in_progress()
    if not kept:
        return "the appliance is stopping"
    log.warning(
        "replaced by the new version: keeping %d session(s) for up to %.0f s", len(kept), seconds
    )
    waited = asyncio.ensure_future(rendezvous.until_idle())
    stopped = asyncio.ensure_future(cut_short.wait())
    await asyncio.wait({waited, stopped}, timeout=seconds, return_when="FIRST_COMPLETED")
    waited.cancel()
    stopped.cancel()
    if cut_short.is_set():
        return "the appliance is stopping"
    return (
        f"the site was upgraded; sessions in progress were kept on the previous version for "
        f"{seconds:.0f} s at most"
    )


async def _start_gateways(runtime: Runtime, supervised: Supervised | None) -> list[GatewayFleet]:
    """The Jump Client gateway on its listening socket (the supervisor's, or bound here
    when unsupervised). One that cannot listen is logged; the site serves without it."""
    text = runtime.settings.gateway
    if text is None:
        return []
    try:
        address = parse_listen_address(text)
        if supervised is not None:
            listening = await asyncio.to_thread(supervised.client.listen, address)
        else:
            listening = bind(address)
    except (ListenError, ListenAddressError) as error:
        log.error("the Jump Client gateway cannot listen on %s: %s", text, error)
        return []
    secret = await asyncio.to_thread(wake_secret, runtime.session_factory)
    return [compose.start_gateways(runtime, listening, secret)]


def _settle_memory(app: FastAPI, runtime: Runtime) -> None:
    """Build what the first requests would (the API schema, the trusted roots), then move
    everything made so far out of the garbage collector's sight (`gc.freeze`).

    A full collection scans every object the process holds; with the app loaded that
    took over 100 ms on a busy machine, and it runs on the event loop, so every request
    in flight (health checks too) waited for it. Frozen objects are never scanned again.
    """
    app.openapi()
    _ = runtime.part(SiteCertificates).trust_roots
    gc.collect()
    gc.freeze()


def _end_sessions(runtime: Runtime, release_name: str) -> int:
    with runtime.uow() as uow:
        ended = installs.end_sessions_at_switch(uow, release_name)
        uow.commit()
    log.warning("%s is live; %d signed-in session(s) ended", release_name, ended)
    return ended


def _audit_install_outcomes(runtime: Runtime) -> int:
    with runtime.uow() as uow:
        audited = installs.audit_outcomes(uow, installs.history(runtime.settings.data_dir))
        uow.commit()
    return audited


def _startup_addresses(runtime: Runtime, settings: ApplianceSettings) -> list[ListenAddress]:
    with runtime.uow() as uow:
        addresses = network.ensure_startup_addresses(uow, settings.listen)
        uow.commit()
    return addresses


async def _open_listeners(
    runtime: Runtime, listeners: UvicornListeners, settings: ApplianceSettings
) -> list[ListenAddress]:
    """Open every enabled address; those given on the command line must open."""
    required = {parse_listen_address(text) for text in settings.listen}
    addresses = await asyncio.to_thread(_startup_addresses, runtime, settings)
    for address in addresses:
        try:
            await listeners.open(address)
        except ListenError as error:
            if address in required:
                await listeners.close_all()
                raise StartupError(str(error)) from None
            log.warning("listen address %s is enabled but cannot open: %s", address, error)
    return listeners.active()


SCHEDULER = Actor(Principal("appliance:scheduler", Role.ADMINISTRATOR), "appliance")


def _run_scheduled_backup(runtime: Runtime) -> None:
    with runtime.uow() as uow:
        outcome = backup_schedule.run_if_due(
            uow, runtime.part(BackupSite), runtime.part(Sealer), SCHEDULER
        )
        uow.commit()
    if outcome is not None and not outcome.ok:
        log.error("scheduled backup failed: %s", outcome.message)


async def _scheduled_backups(runtime: Runtime) -> None:
    while True:
        await asyncio.sleep(runtime.settings.backup_schedule_poll_seconds)
        try:
            await asyncio.to_thread(_run_scheduled_backup, runtime)
        except Exception:  # the loop must outlive one bad run; the run records its own failure
            log.exception("scheduled backup run failed")


FAILOVER_POLL_SECONDS = 5.0
JOURNAL_TEND_SECONDS = 60.0


async def _failover_work(runtime: Runtime) -> None:
    """A backup's periodic sync when due, the peer's check, the journal tended every
    minute."""
    check_every = runtime.settings.failover_check_seconds
    tick = min(FAILOVER_POLL_SECONDS, check_every)
    checked = tended = time.monotonic()
    while True:
        await asyncio.sleep(tick)
        try:
            await asyncio.to_thread(compose.sync_if_due, runtime)
            compose.go_on_with_upgrade(runtime)
            if time.monotonic() - checked >= check_every:
                checked = time.monotonic()
                await asyncio.to_thread(compose.check_failover_peer, runtime)
            if time.monotonic() - tended >= JOURNAL_TEND_SECONDS:
                tended = time.monotonic()
                await asyncio.to_thread(compose.tend_failover, runtime)
        except Exception:  # the loop must outlive one bad run; a sync records its own failure
            log.exception("failover work failed")


def _stop_event() -> asyncio.Event:
    """Set by SIGTERM, SIGINT or Shut Down This Appliance."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _announce(
    console: Console,
    settings: ApplianceSettings,
    identity: Identity,
    addresses: list[ListenAddress],
) -> None:
    ca = tls.paths(settings.certs_dir).ca_cert
    console.print(f"[bold]Bastion appliance[/] {identity.appliance_id} is serving.")
    for address in addresses:
        console.print(f"  Site:      https://{address}/login")
        console.print(f"  Appliance: https://{address}/appliance")
    console.print(f"  Site certificate for {settings.hostname!r}, issued by the CA in {ca}")
    if identity.first_start:
        console.print(
            f"  First sign-in: user [bold]{FIRST_LOGIN_USERNAME}[/], password "
            f"[bold]{FIRST_LOGIN_PASSWORD}[/] (you will choose a new password at once)."
        )
    console.print("Stop with Ctrl+C.", highlight=False)
