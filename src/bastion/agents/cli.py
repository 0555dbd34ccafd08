"""`bastion jump-client install|run|check-in|status|uninstall|systemd-unit`: a Jump Client on
the endpoint it runs on."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(soft_wrap=True)
"""Messages stay whole lines: they land in logs and scripts as often as on a terminal."""
jump_client_app = typer.Typer(
    help="The Jump Client on this endpoint: install it from an installer, run it as a service.",
    no_args_is_help=True,
)


def _default_state() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/bastion-jump-client")
    return Path.home() / ".local" / "state" / "bastion-jump-client"


StateOption = Annotated[
    Path,
    typer.Option("--dir", help="The client's state directory.", default_factory=_default_state),
]


@jump_client_app.command("install")
def install(
    installer: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="The installer file.")
    ],
    state: StateOption,
) -> None:
    """Install the Jump Client from an installer the site made, and register it."""
    from bastion.agents.errors import AgentError
    from bastion.agents.installation import install as install_from
    from bastion.platform.build import site_version

    try:
        installed = install_from(installer, state, site_version())
    except AgentError as error:
        console.print(f"[red]Not installed:[/] {error}")
        raise typer.Exit(2) from None
    console.print(
        f"Jump Client {installed.client_id} ({installed.mode}) installed in {state} for "
        f"{installed.site}. Start it with `bastion jump-client run --dir {state}`, or as a "
        "service (`bastion jump-client systemd-unit`)."
    )


@jump_client_app.command("run")
def run(
    state: StateOption,
    wake_port: Annotated[
        int, typer.Option(help="Passive: the port to listen on for wakes (0: any).")
    ] = 0,
) -> None:
    """Run the installed Jump Client until stopped (what its service does)."""
    from bastion.agents import upgrading
    from bastion.agents.errors import AgentError
    from bastion.agents.runner import Service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    wanted = upgrading.wanted_lib(state)
    if wanted != upgrading.running_lib():
        upgrading.run_from(wanted, state)
    try:
        service = Service(state, wake_port)
    except AgentError as error:
        console.print(f"[red]Cannot run:[/] {error}")
        raise typer.Exit(2) from None
    asyncio.run(service.run())
    if service.restart_into is not None:
        upgrading.run_from(service.restart_into, state)


@jump_client_app.command("check-in")
def check_in(state: StateOption) -> None:
    """Ask the running Jump Client to check in with its site now."""
    from bastion.agents.runner import ask

    try:
        answer = asyncio.run(ask(state, "check-in"))
    except OSError as error:
        console.print(f"[red]No Jump Client runs for {state}:[/] {error}. Start it first.")
        raise typer.Exit(2) from None
    console.print("Checking in." if answer == "ok" else answer)


@jump_client_app.command("status")
def status(state: StateOption) -> None:
    """What is installed here, for which site."""
    from bastion.agents.errors import AgentError
    from bastion.agents.installation import load

    try:
        installed = load(state)
    except AgentError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    for name, value in vars(installed).items():
        console.print(f"{name:>13}: {value}")


@jump_client_app.command("uninstall")
def uninstall(state: StateOption) -> None:
    """Remove the Jump Client's state (its key first). The site lists it until deleted there."""
    from bastion.agents.installation import uninstall as remove

    remove(state)
    console.print(f"Removed {state}.")


UNIT = """[Unit]
Description=Bastion Jump Client
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={python} -m bastion jump-client run --dir {state}
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
"""


@jump_client_app.command("systemd-unit")
def systemd_unit(state: StateOption) -> None:
    """Print a systemd unit that runs this Jump Client as a service."""
    typer.echo(UNIT.format(python=sys.executable, state=state.resolve()), nl=False)
