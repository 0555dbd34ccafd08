"""`bastion jump-client|jumpoint install|run|check-in|status|uninstall|systemd-unit`: a Jump
Client, or a Jumpoint, on the machine it runs on. Both are the same agent; a Jumpoint is
installed from a Jumpoint installer and opens SSH sessions to servers in its network
instead of a shell on its own machine."""

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

SESSIONS_ENV = "BASTION_JUMP_CLIENT_SESSIONS"
REFUSED = 3
"""The exit status when the site refused the installation for good (its service manager
does not start it again)."""
console = Console(soft_wrap=True)
"""Messages stay whole lines: they land in logs and scripts as often as on a terminal."""


def agent_app(kind: str) -> typer.Typer:
    """The commands for one kind of agent: "jump_client" or "jumpoint"."""
    from bastion.agents.installation import KIND_NAMES

    name, command = KIND_NAMES[kind]
    app = typer.Typer(
        help=f"The {name} on this machine: install it from an installer, run it as a service.",
        no_args_is_help=True,
    )

    def _default_state() -> Path:
        if os.geteuid() == 0:
            return Path(f"/var/lib/bastion-{command}")
        return Path.home() / ".local" / "state" / f"bastion-{command}"

    StateOption = Annotated[
        Path,
        typer.Option(
            "--dir", help=f"The {name}'s state directory.", default_factory=_default_state
        ),
    ]

    @app.command("install", help=f"Install the {name} from an installer the site made.")
    def install(
        installer: Annotated[
            Path, typer.Argument(exists=True, dir_okay=False, help="The installer file.")
        ],
        state: StateOption,
    ) -> None:
        from bastion.agents import upgrading
        from bastion.agents.errors import AgentError
        from bastion.agents.installation import Waiting, installed_site
        from bastion.agents.installation import install as install_from
        from bastion.agents.runner import ask
        from bastion.platform.build import site_version

        try:
            replacing = installed_site(state) is not None
            installed = install_from(installer, state, site_version(), kind)
        except AgentError as error:
            console.print(f"[red]Not installed:[/] {error}")
            raise typer.Exit(2) from None
        start = (
            f"Start it with `bastion {command} run --dir {state}`, or as a service "
            f"(`bastion {command} systemd-unit`)."
        )
        if replacing:
            upgrading.reset(state)
            try:  # the running service stops; its service manager starts the new one
                asyncio.run(ask(state, "stop"))
                start = f"The running {name} was stopped: its service starts it again."
            except OSError:
                pass
        if isinstance(installed, Waiting):
            console.print(
                f"{name} installed in {state} for {installed.site}, waiting for the site to "
                f"run version {installed.site_version}: {installed.message} {start}"
            )
            return
        console.print(
            f"{name} {installed.client_id} ({installed.mode}) "
            f"{'replaced' if replacing else 'installed'} in {state} for {installed.site}. "
            f"{start}"
        )

    @app.command("run", help=f"Run the installed {name} until stopped (what its service does).")
    def run(
        state: StateOption,
        wake_port: Annotated[
            int, typer.Option(help="Passive: the port to listen on for wakes (0: any).")
        ] = 0,
        sessions: Annotated[
            bool,
            typer.Option(
                "--sessions/--no-sessions",
                envvar=SESSIONS_ENV,
                help="Open remote sessions when the site asks (--no-sessions: refuse them, "
                "and the representative is told so at once).",
            ),
        ] = True,
    ) -> None:
        from bastion.agents import upgrading
        from bastion.agents.errors import AgentError
        from bastion.agents.installation import waiting
        from bastion.agents.runner import Service, Waiter

        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        if not sessions:  # kept when the service replaces itself with another build
            os.environ[SESSIONS_ENV] = "off"
        wanted = upgrading.wanted_lib(state)
        if wanted != upgrading.running_lib():
            upgrading.run_from(wanted, state)
        try:
            if waiting(state) is not None:
                waiter = Waiter(state)
                asyncio.run(waiter.run())
                if waiter.refused is not None:
                    console.print(f"[red]Cannot run:[/] {waiter.refused}")
                    raise typer.Exit(REFUSED)
                if waiter.installed is None:  # stopped while waiting
                    return
        except AgentError as error:
            console.print(f"[red]Cannot run:[/] {error}")
            raise typer.Exit(2) from None
        try:
            service = Service(state, wake_port, sessions)
        except AgentError as error:
            console.print(f"[red]Cannot run:[/] {error}")
            raise typer.Exit(2) from None
        asyncio.run(service.run())
        if service.restart_into is not None:
            upgrading.run_from(service.restart_into, state)

    @app.command("check-in", help=f"Ask the running {name} to check in with its site now.")
    def check_in(state: StateOption) -> None:
        from bastion.agents.runner import ask

        try:
            answer = asyncio.run(ask(state, "check-in"))
        except OSError as error:
            console.print(f"[red]No {name} runs for {state}:[/] {error}. Start it first.")
            raise typer.Exit(2) from None
        console.print("Checking in." if answer == "ok" else answer)

    @app.command("status", help="What is installed here, for which site.")
    def status(state: StateOption) -> None:
        from bastion.agents.errors import AgentError
        from bastion.agents.installation import NotYetError, load

        try:
            installed = load(state)
        except NotYetError as error:
            console.print(str(error))
            return
        except AgentError as error:
            console.print(f"[red]{error}[/]")
            raise typer.Exit(2) from None
        for field, value in vars(installed).items():
            console.print(f"{field:>13}: {value}")

    @app.command(
        "uninstall",
        help=f"Remove the {name}'s state (its key first). The site lists it until deleted there.",
    )
    def uninstall(state: StateOption) -> None:
        from bastion.agents.installation import uninstall as remove

        remove(state)
        console.print(f"Removed {state}.")

    @app.command("systemd-unit", help=f"Print a systemd unit that runs this {name} as a service.")
    def systemd_unit(state: StateOption) -> None:
        unit = UNIT.format(
            name=name,
            command=command,
            python=sys.executable,
            state=state.resolve(),
            refused=REFUSED,
        )
        typer.echo(unit, nl=False)

    return app


UNIT = """[Unit]
Description=Bastion {name}
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={python} -m bastion {command} run --dir {state}
Restart=always
RestartSec=5
RestartPreventExitStatus={refused}

[Install]
WantedBy=multi-user.target
"""

jump_client_app = agent_app("jump_client")
jumpoint_app = agent_app("jumpoint")
