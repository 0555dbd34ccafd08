"""`python -m bastion.entrypoints.gateway`: one gateway process, started by the worker.

It serves Jump Clients on the listening socket it inherits (descriptor
`BASTION_GATEWAY_FD`, owned by the supervisor), authenticates them against the site's
database, writes their presence back in batches, and takes the worker's commands on its
own message socket. It ends with the worker that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from bastion.agents.protocol import CommandResult
from bastion.certificates import tls
from bastion.failover import state as failover_state
from bastion.failover.rules import Role
from bastion.jump_clients import service
from bastion.jump_clients.config import GatewayConfig
from bastion.jump_clients.gateway import Gateway
from bastion.jump_clients.port import gateway_socket, serve_port
from bastion.jump_clients.routing import InProcessMessagePort
from bastion.jump_clients.rules import FleetSettings
from bastion.jump_clients.sockets import inherited
from bastion.jump_clients.store import DatabaseDirectory, DatabaseSink, wake_secret
from bastion.platform.collector import keep_collections_short
from bastion.platform.db.engine import (
    make_engine,
    report_statements_on_the_loop,
    session_factory,
)
from bastion.platform.event_loop import run_event_loop
from bastion.platform.settings import ApplianceSettings
from bastion.platform.unit_of_work import UnitOfWork
from bastion.sessions import rules as session_rules
from bastion.sessions import service as sessions

log = logging.getLogger("bastion.gateway")
PR_SET_PDEATHSIG = 1
CERTIFICATE_CHECK_SECONDS = 1.0
"""A stat of the served file: within a second of a new default (or of a role swap, before
the fleet sent away by the old primary returns, 2 s at the earliest)."""
SETTINGS_CHECK_SECONDS = float(os.environ.get("BASTION_GATEWAY_SETTINGS_CHECK_SECONDS", "5"))
ROLE_CHECK_SECONDS = 1.0


def _die_with_parent() -> None:
    parent = int(os.environ.get("BASTION_GATEWAY_PARENT_PID", "0") or 0)
    if not parent:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(3)


def _config(settings: ApplianceSettings, index: int, secret: bytes) -> GatewayConfig:
    factory = session_factory(make_engine(settings.sqlalchemy_url()))
    with UnitOfWork(factory) as uow:
        fleet = service.settings(uow)
    rate_file = os.environ.get("BASTION_GATEWAY_RATE_FILE")
    bandwidth_file = os.environ.get("BASTION_GATEWAY_BANDWIDTH_FILE")
    return GatewayConfig(
        site=settings.hostname,
        gateway_id=f"gateway-{index}",
        processes=int(os.environ.get("BASTION_GATEWAY_PROCESSES", "1")),
        connection_rate=float(fleet.connection_rate),
        rate_file=Path(rate_file) if rate_file else None,
        statistics_interval=float(fleet.statistics_interval_seconds),
        wake_secret=secret,
        data_dir=settings.data_dir,
        bandwidth_file=Path(bandwidth_file) if bandwidth_file else None,
        upgrade_bandwidth_mib=float(fleet.upgrade_bandwidth_mib),
        build_stall_seconds=settings.build_stall_seconds,
    )


async def _watch_certificate(context: ssl.SSLContext, certs_dir: Path) -> None:
    """Serve the site's new default certificate soon after the worker writes it."""
    served = tls.paths(certs_dir).served
    seen = served.stat().st_mtime_ns
    while True:
        await asyncio.sleep(CERTIFICATE_CHECK_SECONDS)
        with contextlib.suppress(OSError):
            changed = served.stat().st_mtime_ns
            if changed != seen:
                tls.load_served(context, certs_dir)
                seen = changed
                log.info("gateway serves the site's new default certificate")


def _fleet_settings(factory: sessionmaker[Session]) -> FleetSettings:
    with UnitOfWork(factory) as uow:
        return service.settings(uow)


async def _watch_settings(gateway: Gateway, factory: sessionmaker[Session]) -> None:
    """Apply the site's changed connection rate and statistics interval soon after an
    administrator saves them, without a restart."""
    while True:
        await asyncio.sleep(SETTINGS_CHECK_SECONDS)
        try:
            fleet = await asyncio.to_thread(_fleet_settings, factory)
        except Exception:
            log.exception("could not read the Jump Client settings; keeping the current ones")
            continue
        gateway.reconfigure(float(fleet.connection_rate), float(fleet.statistics_interval_seconds))


def _is_backup(state_dir: Path) -> bool:
    return failover_state.read_pair(state_dir).role is Role.BACKUP


async def _watch_role(gateway: Gateway, state_dir: Path) -> None:
    """Stand by while this appliance is a failover backup (a role swap, or joining a pair
    as the backup), and serve again once it is not; seen within a second (the pair's
    file is parsed again only when it changed). A file that cannot be read is logged once
    (and once more for another reason), not every second; the gateway keeps its current
    stance meanwhile."""
    failing = ""
    while True:
        await asyncio.sleep(ROLE_CHECK_SECONDS)
        try:
            gateway.stand_by(_is_backup(state_dir))
        except Exception as error:
            said = f"{type(error).__name__}: {error}"
            if said != failing:
                log.exception("could not read this appliance's failover role; keeping the current")
            failing = said
            continue
        if failing:
            log.info("this appliance's failover role can be read again")
            failing = ""


def _refused_sessions(
    factory: sessionmaker[Session], results: Sequence[tuple[str, CommandResult]]
) -> None:
    """End the records of the sessions the Jump Clients would not start: the serving
    worker that holds each sees it within a second and tells the representative why."""
    refused = [
        (client_id, result)
        for client_id, result in results
        if result.outcome != "done" and session_rules.session_of(result.command_id)
    ]
    if not refused:
        return
    with UnitOfWork(factory) as uow:
        for client_id, result in refused:
            sessions.refused_by_client(uow, client_id, result)
        uow.commit()


async def _serve(settings: ApplianceSettings, index: int, fd: int) -> None:
    engine = make_engine(settings.sqlalchemy_url())
    factory = session_factory(engine)
    config = _config(settings, index, wake_secret(factory))
    context = tls.server_context(settings.certs_dir)
    local = InProcessMessagePort()
    sink = DatabaseSink(engine, local, partial(_refused_sessions, factory))
    gateway = Gateway(config, context, DatabaseDirectory(factory), sink, local)
    port = await serve_port(gateway_socket(settings.data_dir, index), local)
    gateway.stand_by(_is_backup(settings.state_dir))
    await gateway.serve(inherited(fd))
    report_statements_on_the_loop(engine, log)
    watchers = [
        asyncio.create_task(_watch_certificate(context, settings.certs_dir)),
        asyncio.create_task(_watch_settings(gateway, factory)),
        asyncio.create_task(_watch_role(gateway, settings.state_dir)),
        asyncio.create_task(keep_collections_short()),
    ]
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    log.info("gateway %s serves Jump Clients of %s", index, config.site)
    await stop.wait()
    for watcher in watchers:
        watcher.cancel()
    port.close()
    await gateway.stop()
    engine.dispose()


def main() -> int:
    _die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # a line per client otherwise
    settings = ApplianceSettings()
    index = int(os.environ.get("BASTION_GATEWAY_INDEX", "0"))
    fd = int(os.environ["BASTION_GATEWAY_FD"])
    run_event_loop(_serve(settings, index, fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
