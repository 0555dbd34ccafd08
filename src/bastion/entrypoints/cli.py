"""The `bastion` command: one sub-command per process and per administrative operation."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.access_console.cli import console_app
from bastion.accounts.cli import api_client_app
from bastion.agents.cli import jump_client_app, jumpoint_app
from bastion.backups.cli import backup_app
from bastion.failover.cli import failover_app
from bastion.installs.cli import install_app
from bastion.integration_client.cli import integration_app
from bastion.jump_clients.cli import fleet_app
from bastion.platform import build
from bastion.platform.cli import ConsoleWiring
from bastion.platform.console import output_console
from bastion.platform.logs import configure_logging
from bastion.platform.settings import ApplianceSettings
from bastion.updates.cli import appliance_updates_app

if TYPE_CHECKING:
    from bastion.platform.runtime import Runtime


def _settings(data: Path, database_url: str | None) -> ApplianceSettings:
    overrides: dict[str, object] = {"data_dir": data}
    if database_url:
        overrides["database_url"] = database_url
    return ApplianceSettings(**overrides)  # type: ignore[arg-type]


def _open_console_runtime(data: Path, database_url: str | None) -> Runtime:
    from bastion.entrypoints import compose  # the whole appliance's imports, only here

    return compose.for_console(_settings(data, database_url))


app = typer.Typer(
    help="Bastion: a self-hosted privileged remote access appliance.",
    no_args_is_help=True,
    context_settings={"obj": ConsoleWiring(_open_console_runtime)},
)
appliance_app = typer.Typer(help="Run and administer an appliance.", no_args_is_help=True)
app.add_typer(appliance_app, name="appliance")
console = output_console()


@app.command()
def version() -> None:
    """Print the site version, base version and build."""
    console.print(
        f"bastion {build.site_version()} (build {build.build_id()}, "
        f"base {build.base_description()})"
    )


@appliance_app.command("serve")
def serve(
    data: Annotated[Path, typer.Option(help="Data directory; created on first start.")] = Path(
        "var/appliance"
    ),
    listen: Annotated[
        list[str] | None, typer.Option(help="ADDR:PORT to serve on; repeat for several.")
    ] = None,
    hostname: Annotated[
        str, typer.Option(help="The site hostname the certificate names.")
    ] = "localhost",
    database_url: Annotated[
        str | None, typer.Option(help="PostgreSQL URL instead of the embedded SQLite database.")
    ] = None,
) -> None:
    """Serve the appliance over HTTPS: the site (/login), the machine (/appliance) and the API."""
    settings = _settings(data, database_url).model_copy(update={"hostname": hostname})
    if listen:
        settings = settings.model_copy(update={"listen": listen})
    from bastion.supervisor import launch  # the server's imports, only here

    configure_logging()
    code = launch.main(settings)
    if code:
        raise typer.Exit(code)


appliance_app.add_typer(api_client_app, name="api-client")
appliance_app.add_typer(appliance_updates_app)
appliance_app.add_typer(install_app)
appliance_app.add_typer(fleet_app, name="fleet")
app.add_typer(backup_app, name="backup")
app.add_typer(failover_app, name="failover")
app.add_typer(jump_client_app, name="jump-client")
app.add_typer(jumpoint_app, name="jumpoint")
app.add_typer(console_app, name="console")
app.add_typer(integration_app, name="integration-client")


VENDOR_COMMANDS = ("update-service", "release")


def _add_vendor_commands() -> None:
    from bastion.update_service.cli import release_app, update_service_app

    app.add_typer(update_service_app, name="update-service")
    app.add_typer(release_app, name="release")


CONSOLE_SLOT_ENV = "BASTION_CONSOLE_SLOT"


def _run_from_current_slot(argv: list[str]) -> None:
    """Console commands use the installed site release's code, as the worker does.

    After an install, the database holds the new release's schema; a console
    command run by the code installed with the appliance would not know it.
    """
    if not argv or argv[0] not in ("appliance", "backup") or argv[:2] == ["appliance", "serve"]:
        return
    data = Path("var/appliance")
    for index, arg in enumerate(argv):
        if arg == "--data" and index + 1 < len(argv):
            data = Path(argv[index + 1])
        elif arg.startswith("--data="):
            data = Path(arg.split("=", 1)[1])
    from bastion.supervisor.slots import CURRENT, Releases

    releases = Releases(data)
    slot = releases.target(CURRENT)
    if slot is None or os.environ.get(CONSOLE_SLOT_ENV) == slot:
        return
    if releases.manifest(slot).get("factory", True):
        return
    env = {**os.environ, CONSOLE_SLOT_ENV: slot, "PYTHONPATH": str(releases.lib(slot))}
    os.execve(sys.executable, [sys.executable, "-m", "bastion", *argv], env)


def main() -> None:
    _run_from_current_slot(sys.argv[1:])
    # The vendor's commands import the TUF stack; appliance commands start faster without it.
    wanted = sys.argv[1] if len(sys.argv) > 1 else "--help"
    if wanted in VENDOR_COMMANDS or wanted.startswith("-"):
        _add_vendor_commands()
    app()
