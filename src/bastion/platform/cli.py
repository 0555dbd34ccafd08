"""What every capability's console commands share: the data directory option, who is
acting, and the appliance's runtime, wired by the composition root exactly as the worker
wires it (the `bastion` command puts the opener on the Typer context).

Heavy imports (the TUF stack, the web stack) happen only when a command opens the runtime,
so the `bastion` command itself starts fast.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from bastion.platform.console import output_console
from bastion.platform.principals import Actor, Principal, Role

if TYPE_CHECKING:
    from bastion.platform.runtime import Runtime
    from bastion.platform.unit_of_work import UnitOfWork

T = TypeVar("T")
console = output_console()
DataOption = Annotated[Path, typer.Option("--data", help="The appliance's data directory.")]
DatabaseUrlOption = Annotated[str | None, typer.Option(help="PostgreSQL URL, if used.")]
DEFAULT_DATA = Path("var/appliance")


class NoApplianceError(Exception):
    """A console command was pointed at a directory that holds no appliance."""


@dataclass(frozen=True)
class ConsoleWiring:
    """Put on the root Typer context: opens the runtime of the appliance in a data
    directory (and, for PostgreSQL, at a database URL)."""

    open_runtime: Callable[[Path, str | None], Runtime]


def console_actor() -> Actor:
    """The administrator at this machine's console, as the audit log names them."""
    user = getpass.getuser()
    return Actor(
        Principal(f"console:{user}", Role.ADMINISTRATOR), f"console@{socket.gethostname()}"
    )


@contextmanager
def console_runtime(
    ctx: typer.Context, data: Path, database_url: str | None = None
) -> Iterator[Runtime]:
    """The runtime of the appliance in `data`; a clear refusal if there is none."""
    wiring = ctx.find_object(ConsoleWiring)
    if wiring is None:
        raise RuntimeError("console commands run under the `bastion` command")
    try:
        runtime = wiring.open_runtime(data, database_url)
    except NoApplianceError as error:
        raise typer.BadParameter(str(error), param_hint="--data") from None
    try:
        yield runtime
    finally:
        runtime.engine.dispose()


def run_step(runtime: Runtime, step: Callable[[UnitOfWork], T], failed: str) -> T:
    """Run one use case in a unit of work and commit it, or print why it was refused
    (keeping the refusal's own record) and exit with status 2."""
    from bastion.platform.errors import ServiceError

    with runtime.uow() as uow:
        try:
            result = step(uow)
        except ServiceError as error:
            uow.keep_record_of(error)
            console.print(f"[red]{failed}:[/] {error}")
            raise typer.Exit(2) from None
        uow.commit()
    return result
