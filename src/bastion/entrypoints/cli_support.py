"""What the update and install console commands share: the data directory, its database,
the update setup and who is acting. Heavy imports happen inside the functions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from bastion.settings import ApplianceSettings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bastion.services.audit import Actor
    from bastion.services.unit_of_work import UnitOfWork
    from bastion.services.updates import UpdateSetup

console = Console()
DataOption = Annotated[Path, typer.Option("--data", help="The appliance's data directory.")]
DEFAULT_DATA = Path("var/appliance")


def settings_of(data: Path) -> ApplianceSettings:
    return ApplianceSettings(data_dir=data)


def setup_of(data: Path) -> UpdateSetup:
    from bastion.services.updates import UpdateSetup

    return UpdateSetup.from_settings(settings_of(data))


@contextmanager
def open_database(data: Path) -> Iterator[tuple[Engine, UnitOfWork]]:
    """The appliance's database and a unit of work on it; refused if `data` holds none."""
    from bastion.adapters.db.engine import make_engine, session_factory
    from bastion.services.unit_of_work import UnitOfWork

    settings = settings_of(data)
    if settings.database_url is None and not (settings.db_dir / "bastion.sqlite").exists():
        raise typer.BadParameter(
            f"{data} holds no appliance; start one with `bastion appliance serve` first.",
            param_hint="--data",
        )
    engine = make_engine(settings.sqlalchemy_url())
    try:
        with UnitOfWork(session_factory(engine)) as uow:
            yield engine, uow
    finally:
        engine.dispose()


@contextmanager
def open_uow(data: Path) -> Iterator[UnitOfWork]:
    with open_database(data) as (_engine, uow):
        yield uow


def actor() -> Actor:
    from bastion.entrypoints.admin import console_actor

    return console_actor()
