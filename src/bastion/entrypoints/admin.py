"""Administrative operations run on the appliance's own console, against its data directory."""

from __future__ import annotations

import getpass
import socket

import typer

from bastion import release
from bastion.adapters.db.engine import make_engine, migrate, session_factory
from bastion.adapters.db.models import Base
from bastion.adapters.identity import stored_hostname
from bastion.adapters.passwords import Argon2Hasher
from bastion.domain.accounts import Principal, Role
from bastion.services import api_clients
from bastion.services.audit import Actor
from bastion.services.backups import BackupSite
from bastion.services.errors import ServiceError
from bastion.services.unit_of_work import UnitOfWork
from bastion.settings import ApplianceSettings


def console_actor() -> Actor:
    user = getpass.getuser()
    return Actor(
        Principal(f"console:{user}", Role.ADMINISTRATOR), f"console@{socket.gethostname()}"
    )


def _uow(settings: ApplianceSettings) -> UnitOfWork:
    if settings.database_url is None and not (settings.db_dir / "bastion.sqlite").exists():
        raise typer.BadParameter(
            f"{settings.data_dir} holds no appliance; "
            "start one with `bastion appliance serve` first.",
            param_hint="--data",
        )
    engine = make_engine(settings.sqlalchemy_url())
    migrate(engine)
    return UnitOfWork(session_factory(engine))


def create_api_client(settings: ApplianceSettings, name: str) -> api_clients.NewApiClient:
    hasher = Argon2Hasher(fast=settings.password_hash_fast)
    with _uow(settings) as uow:
        try:
            created = api_clients.create_client(uow, hasher, console_actor(), name)
        except ServiceError as error:
            raise typer.BadParameter(str(error), param_hint="NAME") from None
        uow.commit()
    return created


def revoke_api_client(settings: ApplianceSettings, name: str) -> None:
    with _uow(settings) as uow:
        client = uow.api_clients.by_name(name)
        if client is None:
            raise typer.BadParameter(f"There is no API client named {name!r}.", param_hint="NAME")
        api_clients.revoke_client(uow, console_actor(), client.id)
        uow.commit()


def backup_site(settings: ApplianceSettings) -> BackupSite:
    """The site in the data directory, as `bastion backup` sees it."""
    _uow(settings)  # refuses a directory that holds no appliance
    return BackupSite(
        engine=make_engine(settings.sqlalchemy_url()),
        metadata=Base.metadata,
        data_dir=settings.data_dir,
        site_name=stored_hostname(settings.state_dir) or settings.hostname,
        software_version=release.site_version(),
    )
