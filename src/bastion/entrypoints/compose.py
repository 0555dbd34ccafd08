"""The composition root: every capability is wired here, once, for the worker, the web
app and every console command alike.

`build` makes a `Runtime` holding each capability's parts (see `Runtime.part`). A page,
an API route and a console command that do the same thing therefore use the same key
vault, the same backup site and the same hooks; nothing else builds them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine, MetaData

# Every capability's tables register on the shared Base when their models are imported.
from bastion.accounts import models as _accounts_tables  # noqa: F401
from bastion.accounts.service import AccountsSetup
from bastion.agents.protocol import Command
from bastion.appliance import service as appliance
from bastion.appliance.service import ApplianceControl
from bastion.backups.schedule import Sealer
from bastion.backups.service import BackupSite
from bastion.certificates import models as _certificate_tables  # noqa: F401
from bastion.certificates.site import SiteCertificates
from bastion.entrypoints.pair_upgrade import SiteInstaller
from bastion.entrypoints.session_probe import SessionProbe, own_host
from bastion.failover import dns_swing, journal, shared_ips, swap
from bastion.failover import models as _failover_tables  # noqa: F401
from bastion.failover import service as failover
from bastion.failover import sync as failover_sync
from bastion.failover import upgrade as upgrading
from bastion.failover.dns_swing import DnsSwing
from bastion.failover.rules import PeerAddress, Role
from bastion.failover.service import FailoverSetup
from bastion.failover.shared_ips import SharedIp
from bastion.failover.state import KeyStore
from bastion.failover.sync import SyncSite
from bastion.failover.upgrade import UpgradeSetup
from bastion.installs.service import InstallsSetup, held_site_versions
from bastion.jump_clients import models as _jump_client_tables  # noqa: F401
from bastion.jump_clients.fleet import GatewayFleet, Rollout
from bastion.jump_clients.routing import Deliver
from bastion.jump_clients.service import JumpClientsSetup
from bastion.jumpoints import models as _jumpoint_tables  # noqa: F401
from bastion.jumpoints.service import JumpointsSetup
from bastion.network import models as _network_tables  # noqa: F401
from bastion.network import service as network
from bastion.network.ntp import ClockMonitor
from bastion.network.service import Listeners, NetworkSetup
from bastion.platform import build as this_build
from bastion.platform import identity
from bastion.platform.clock import utc_now
from bastion.platform.db.engine import database_size_bytes, make_engine, migrate, session_factory
from bastion.platform.db.models import Base
from bastion.platform.errors import ServiceError
from bastion.platform.principals import APPLIANCE, Actor
from bastion.platform.runtime import Runtime
from bastion.platform.settings import ApplianceSettings
from bastion.sessions import models as _session_tables  # noqa: F401
from bastion.sessions.relay import Rendezvous
from bastion.supervisor.client import SupervisorClient
from bastion.supervisor.sockets import ListenAddress, parse_listen_address
from bastion.updates.service import UpdateSetup

log = logging.getLogger("bastion.failover")

METADATA: MetaData = Base.metadata
"""Every table of the site and the machine."""


class NoApplianceError(Exception):
    """A console command was pointed at a directory that holds no appliance."""


def build(settings: ApplianceSettings, engine: Engine | None = None) -> Runtime:
    """The appliance's runtime with every capability wired; listeners are added by
    `add_network` in the worker, which alone serves."""
    engine = engine or make_engine(settings.sqlalchemy_url())
    runtime = Runtime(settings, engine, session_factory(engine))
    accounts = AccountsSetup.from_settings(settings)
    certificates = SiteCertificates(
        settings.certs_dir, settings.hostname, runtime.uow, settings.trust_anchors_file
    )
    runtime.add(accounts, certificates, _backup_site(runtime, certificates), _sealer(certificates))
    updates = UpdateSetup.from_settings(settings)
    supervisor = SupervisorClient(settings.data_dir)
    probation = settings.install_probation_seconds
    installs = InstallsSetup(updates, supervisor, _size_of(engine), probation)
    runtime.add(updates, supervisor, installs)
    reset = partial(
        appliance.reset_to_factory,
        engine,
        METADATA,
        accounts.hasher,
        certificates,
        listen_hosts(settings),
    )
    runtime.add(ApplianceControl(_unless_backup(settings.state_dir, reset), shut_down=None))
    jump_clients = _jump_clients(settings, certificates, updates)
    runtime.add(jump_clients, _rendezvous(runtime, jump_clients))
    runtime.add(JumpointsSetup(certificates.vault.seal, certificates.vault.unseal))
    runtime.add(_failover(runtime, certificates))
    runtime.add(UpgradeSetup(SiteInstaller(runtime), runtime.uow))
    return runtime


def add_network(runtime: Runtime, listeners: Listeners) -> NetworkSetup:
    """What only a serving worker has: its listeners and the NTP clock monitor."""
    settings = runtime.settings

    def ntp_server() -> str:
        with runtime.uow() as uow:
            return network.ntp_server(uow, settings.ntp_server_default)

    clock = ClockMonitor(ntp_server, settings.ntp_poll_seconds, settings.ntp_timeout_seconds)
    setup = NetworkSetup(listeners, clock, settings.ntp_server_default)
    runtime.add(setup)
    return setup


def start_gateways(runtime: Runtime, listening: socket.socket, secret: bytes) -> GatewayFleet:
    """The worker's gateway processes on the gateway's listening socket (the supervisor's);
    `secret`: the site's wake secret (`jump_clients.store.wake_secret`)."""
    settings = runtime.settings
    fleet = GatewayFleet(listening, settings.data_dir, settings.gateway_processes, secret)
    fleet.start()
    rollout = Rollout(fleet, runtime, this_build.site_version(), settings.data_dir)
    runtime.add(fleet, rollout)
    rendezvous = runtime.part(Rendezvous)
    rendezvous.publish = partial(_start_session, fleet)
    rendezvous.waker = fleet
    gateway = listening.getsockname()
    web = parse_listen_address(settings.listen[0])
    runtime.add(
        SessionProbe(
            runtime,
            asyncio.get_running_loop(),
            ListenAddress(own_host(gateway[0]), gateway[1]),
            ListenAddress(own_host(web.host), web.port),
        )
    )
    return fleet


async def _start_session(fleet: GatewayFleet, client_id: str, command: Command) -> bool:
    return await fleet.publish(Deliver(client_id, command))


def _rendezvous(runtime: Runtime, jump_clients: JumpClientsSetup) -> Rendezvous:
    """Sessions meet on this worker; Jump Clients connect back to the site's web listener,
    at the address installers give them for the site."""
    address = urlsplit(jump_clients.site_url).netloc
    return Rendezvous(runtime.uow, runtime.settings.data_dir, address)


def for_console(settings: ApplianceSettings) -> Runtime:
    """The runtime of the appliance in `settings.data_dir`, for a console command: the same
    wiring as the worker's, naming the site as the appliance last served it."""
    if settings.database_url is None and not (settings.db_dir / "bastion.sqlite").exists():
        raise NoApplianceError(
            f"{settings.data_dir} holds no appliance; "
            "start one with `bastion appliance serve` first."
        )
    stored = identity.stored_hostname(settings.state_dir)
    if stored:
        settings = settings.model_copy(update={"hostname": stored})
    runtime = build(settings)
    migrate(runtime.engine)
    journal.ensure_triggers(runtime.engine, METADATA)
    supervisor = runtime.part(SupervisorClient)
    runtime.part(SiteCertificates).tell_live_worker = supervisor.serve_certificate
    return runtime


def prepare_journal(runtime: Runtime) -> None:
    """After the migrations: journal every site table the schema now has."""
    journal.ensure_triggers(runtime.engine, METADATA)


def tend_failover(runtime: Runtime) -> None:
    """The failover pair's periodic work: the journal kept within bounds."""
    role = runtime.part(FailoverSetup).pair().role
    journal.tend(runtime.engine, keeps_for_backup=role is Role.PRIMARY)


def check_failover_peer(runtime: Runtime) -> None:
    """In a pair: the peer's status and role (a split brain found), the shared addresses
    kept where this appliance's role says, automatic failover when it is due, and on the
    primary the site's DNS name kept pointing here (not in a split brain: two primaries
    would take it in turns; it stays where the last takeover put it until the split
    brain is fixed)."""
    setup = runtime.part(FailoverSetup)
    checked = swap.check_peer(setup)
    with runtime.uow() as uow:
        if swap.take_over_if_due(uow, setup, APPLIANCE):
            uow.commit()
    if checked is None or checked.status != swap.SPLIT_BRAIN:
        dns_swing.keep_here(setup.dns_swing, setup.state_dir, setup.pair().role)


def go_on_with_upgrade(runtime: Runtime) -> None:
    """The pair's upgrade runbook, when one is running and no process runs it (this
    worker replaced the one that started it, at its own install or after a crash)."""
    upgrade = runtime.part(UpgradeSetup)
    upgrading.run_in_background(
        runtime.part(FailoverSetup), upgrade.installer, upgrade.uow, APPLIANCE
    )


def sync_if_due(runtime: Runtime) -> None:
    """On a backup: the first sync about a minute after joining, then every interval."""
    setup = runtime.part(FailoverSetup)
    with runtime.uow() as uow:
        interval = failover_sync.interval_seconds(uow)
    if failover_sync.due(setup.pair(), utc_now(), interval, setup.first_sync_seconds):
        try:
            failover.run_sync(setup)
        except ServiceError as error:  # recorded in state/failover.json and on /check_health
            log.warning("failover sync failed: %s", error)


def _unless_backup(state_dir: Path, reset: Callable[[Actor], None]) -> Callable[[Actor], None]:
    def reset_unless_backup(actor: Actor) -> None:
        failover.refuse_on_backup(state_dir, "a reset to factory defaults")
        reset(actor)

    return reset_unless_backup


def listen_hosts(settings: ApplianceSettings) -> list[str]:
    return [parse_listen_address(text).host for text in settings.listen]


def _backup_site(runtime: Runtime, certificates: SiteCertificates) -> BackupSite:
    settings = runtime.settings
    return BackupSite(
        engine=runtime.engine,
        metadata=METADATA,
        data_dir=settings.data_dir,
        site_name=settings.hostname,
        software_version=this_build.site_version(),
        unseal_key=certificates.vault.unseal,
        seal_key=certificates.vault.seal,
        after_restore=[certificates.serve_default, partial(journal.restart, runtime.engine)],
        before_restore=[partial(failover.refuse_on_backup, settings.state_dir, "a restore")],
        upload_limit_bytes=settings.backup_upload_limit_bytes,
    )


def _jump_clients(
    settings: ApplianceSettings, certificates: SiteCertificates, updates: UpdateSetup
) -> JumpClientsSetup:
    gateway = parse_listen_address(settings.gateway).port if settings.gateway else 0

    def anchors() -> str:
        pem = serialization.Encoding.PEM
        return "".join(c.public_bytes(pem).decode() for c in certificates.client_anchors())

    return JumpClientsSetup(
        site=settings.hostname,
        site_version=this_build.site_version(),
        gateway_address=settings.gateway_address or f"{settings.hostname}:{gateway}",
        site_url=_site_url(settings),
        anchors_pem=anchors,
        next_versions=partial(held_site_versions, setup=updates),
    )


def _failover(runtime: Runtime, certificates: SiteCertificates) -> FailoverSetup:
    settings = runtime.settings
    vault = certificates.vault
    return FailoverSetup(
        keys=KeyStore(settings.state_dir, vault.seal, vault.unseal),
        state_dir=settings.state_dir,
        site_hostname=settings.hostname,
        version=this_build.site_version(),
        dialect=runtime.engine.dialect.name,
        sync=SyncSite(runtime.part(BackupSite), threading.Lock()),
        first_sync_seconds=settings.failover_first_sync_seconds,
        shared_ips=_shared_ips(settings.failover_shared_ips),
        auto_takeover_seconds=settings.failover_auto_takeover_seconds,
        test_addresses=[_test_address(text) for text in settings.failover_test_addresses],
        site_url=_site_url(settings),
        dns_swing=_dns_swing(settings),
        served_fingerprints=certificates.served_fingerprints,
        serve_site_certificate=certificates.serve_default,
    )


def _site_url(settings: ApplianceSettings) -> str:
    web = parse_listen_address(settings.listen[0]).port if settings.listen else 443
    return settings.public_url or f"https://{settings.hostname}:{web}"


def _test_address(text: str) -> PeerAddress:
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"BASTION_FAILOVER_TEST_ADDRESSES: {text!r} is not HOST:PORT.")
    return PeerAddress(host.strip("[]"), int(port))


def _shared_ips(texts: list[str]) -> list[SharedIp]:
    try:
        return shared_ips.parse_all(texts)
    except ValueError as error:
        raise SystemExit(f"BASTION_FAILOVER_SHARED_IPS: {error}") from None


def _dns_swing(settings: ApplianceSettings) -> DnsSwing | None:
    try:
        return dns_swing.from_settings(
            settings.failover_dns_server,
            settings.failover_dns_zone,
            settings.failover_dns_name,
            settings.failover_dns_address,
            settings.failover_dns_tsig_key_file,
            settings.failover_dns_ttl,
        )
    except ValueError as error:
        raise SystemExit(f"BASTION_FAILOVER_DNS_*: {error}") from None


def _sealer(certificates: SiteCertificates) -> Sealer:
    return Sealer(certificates.vault.seal, certificates.vault.unseal)


def _size_of(engine: Engine) -> partial[int]:
    return partial(database_size_bytes, engine)
