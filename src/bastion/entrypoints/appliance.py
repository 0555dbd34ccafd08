"""Start an appliance: initialise the data directory once, then serve until told to stop."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from sqlalchemy import Engine

from bastion.adapters import tls
from bastion.adapters.db.engine import make_engine, migrate, session_factory
from bastion.adapters.db.models import Account
from bastion.adapters.listeners import UvicornListeners
from bastion.adapters.ntp import ClockMonitor
from bastion.adapters.passwords import Argon2Hasher
from bastion.adapters.web.app import create_app
from bastion.adapters.web.runtime import Runtime
from bastion.domain.accounts import FIRST_LOGIN_PASSWORD, FIRST_LOGIN_USERNAME, Role
from bastion.domain.network import ListenAddress, parse_listen_address
from bastion.services import network
from bastion.services.ports import ListenError, Listeners, utc_now
from bastion.services.unit_of_work import UnitOfWork
from bastion.settings import ApplianceSettings

log = logging.getLogger("bastion.appliance")
IDENTITY_FILE = "appliance.json"


class StartupError(Exception):
    """The appliance cannot start; the message says what to fix."""


@dataclass(frozen=True)
class Identity:
    appliance_id: str
    created_at: str
    first_start: bool


def initialise(settings: ApplianceSettings, engine: Engine, hasher: Argon2Hasher) -> Identity:
    """Bring the data directory to a state that serves; the first time, create the site."""
    for directory in (settings.data_dir, settings.db_dir, settings.certs_dir, settings.state_dir):
        directory.mkdir(parents=True, exist_ok=True)
    migrate(engine)
    identity_path = settings.state_dir / IDENTITY_FILE
    if identity_path.exists():
        stored = json.loads(identity_path.read_text())
        return Identity(stored["appliance_id"], stored["created_at"], first_start=False)
    tls.create_site_certificates(settings.certs_dir, settings.hostname, _listen_hosts(settings))
    _create_first_login(engine, hasher)
    identity = {"appliance_id": str(uuid.uuid4()), "created_at": utc_now().isoformat()}
    tmp = identity_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(identity, indent=2))
    os.replace(tmp, identity_path)  # written last: an interrupted first start starts over
    return Identity(identity["appliance_id"], identity["created_at"], first_start=True)


def _listen_hosts(settings: ApplianceSettings) -> list[str]:
    return [parse_listen_address(text).host for text in settings.listen]


def _create_first_login(engine: Engine, hasher: Argon2Hasher) -> None:
    with UnitOfWork(session_factory(engine)) as uow:
        if uow.accounts.by_username(FIRST_LOGIN_USERNAME) is None:
            uow.accounts.add(
                Account(
                    username=FIRST_LOGIN_USERNAME,
                    display_name="Administrator",
                    role=Role.ADMINISTRATOR.value,
                    password_hash=hasher.hash(FIRST_LOGIN_PASSWORD),
                    must_change_password=True,
                    disabled=False,
                    created_at=utc_now(),
                )
            )
        uow.commit()


def build_runtime(settings: ApplianceSettings, listeners: Listeners, engine: Engine) -> Runtime:
    runtime = Runtime(
        settings=settings,
        engine=engine,
        session_factory=session_factory(engine),
        hasher=Argon2Hasher(fast=settings.password_hash_fast),
        listeners=listeners,
        clock=ClockMonitor(lambda: "", settings.ntp_poll_seconds, settings.ntp_timeout_seconds),
    )
    runtime.clock = ClockMonitor(
        runtime.ntp_server, settings.ntp_poll_seconds, settings.ntp_timeout_seconds
    )
    return runtime


async def serve(settings: ApplianceSettings, console: Console) -> None:
    engine = make_engine(settings.sqlalchemy_url())
    hasher = Argon2Hasher(fast=settings.password_hash_fast)
    identity = initialise(settings, engine, hasher)
    listeners = UvicornListeners(tls.server_context(settings.certs_dir))
    runtime = build_runtime(settings, listeners, engine)
    listeners.attach(create_app(runtime))
    addresses = await _open_listeners(runtime, listeners, settings)
    clock_task = asyncio.create_task(runtime.clock.run(), name="clock monitor")
    runtime.serving = True
    _announce(console, settings, identity, addresses)
    await _until_stopped()
    runtime.serving, runtime.stopping = False, True
    clock_task.cancel()
    await listeners.close_all()
    engine.dispose()
    console.print("Bastion appliance stopped.")


async def _open_listeners(
    runtime: Runtime, listeners: UvicornListeners, settings: ApplianceSettings
) -> list[ListenAddress]:
    """Open every enabled address; those given on the command line must open."""
    required = {parse_listen_address(text) for text in settings.listen}
    with runtime.uow() as uow:
        addresses = network.ensure_startup_addresses(uow, settings.listen)
        uow.commit()
    for address in addresses:
        try:
            await listeners.open(address)
        except ListenError as error:
            if address in required:
                await listeners.close_all()
                raise StartupError(str(error)) from None
            log.warning("listen address %s is enabled but cannot open: %s", address, error)
    return listeners.active()


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


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


def data_dir_path(text: str) -> Path:
    return Path(text).expanduser()
