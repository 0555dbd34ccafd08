"""The `bastion` command: one sub-command per process and per administrative operation."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bastion import release
from bastion.entrypoints.cli_updates import appliance_updates_app
from bastion.settings import ApplianceSettings

app = typer.Typer(
    help="Bastion: a self-hosted privileged remote access appliance.", no_args_is_help=True
)
appliance_app = typer.Typer(help="Run and administer an appliance.", no_args_is_help=True)
app.add_typer(appliance_app, name="appliance")
console = Console()


@app.command()
def version() -> None:
    """Print the site version, base version and build."""
    console.print(
        f"bastion {release.site_version()} (build {release.build_id()}, "
        f"base {release.base_description()})"
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

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    code = launch.main(settings)
    if code:
        raise typer.Exit(code)


api_client_app = typer.Typer(
    help="API clients, from the appliance's own console.", no_args_is_help=True
)
appliance_app.add_typer(api_client_app, name="api-client")
appliance_app.add_typer(appliance_updates_app)
DataOption = Annotated[Path, typer.Option("--data", help="The appliance's data directory.")]


@api_client_app.command("create")
def api_client_create(
    name: Annotated[str, typer.Argument(help="A name that says who uses the client.")],
    data: DataOption = Path("var/appliance"),
    database_url: Annotated[str | None, typer.Option(help="PostgreSQL URL, if used.")] = None,
) -> None:
    """Create an API client and print its credentials (the secret is shown only now)."""
    from bastion.entrypoints import admin

    created = admin.create_api_client(_settings(data, database_url), name)
    console.print_json(
        data={"client_id": created.client.client_id, "client_secret": created.client_secret}
    )


@api_client_app.command("revoke")
def api_client_revoke(
    name: Annotated[str, typer.Argument(help="The API client's name.")],
    data: DataOption = Path("var/appliance"),
    database_url: Annotated[str | None, typer.Option(help="PostgreSQL URL, if used.")] = None,
) -> None:
    """Revoke an API client: its tokens stop working at once."""
    from bastion.entrypoints import admin

    admin.revoke_api_client(_settings(data, database_url), name)
    console.print(f"API client {name!r} revoked.")


backup_app = typer.Typer(help="Encrypted backups of a site.", no_args_is_help=True)
app.add_typer(backup_app, name="backup")
PassphraseOption = Annotated[
    str,
    typer.Option(
        prompt=True,
        hide_input=True,
        envvar="BASTION_BACKUP_PASSPHRASE",
        help="The backup's passphrase (asked for when not given; or BASTION_BACKUP_PASSPHRASE).",
    ),
]


@backup_app.command("create")
def backup_create(
    out: Annotated[Path, typer.Argument(help="Directory to write the backup file into.")],
    passphrase: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="BASTION_BACKUP_PASSPHRASE",
            help="Passphrase of at least 12 characters; needed to restore.",
        ),
    ],
    data: DataOption = Path("var/appliance"),
    database_url: Annotated[str | None, typer.Option(help="PostgreSQL URL, if used.")] = None,
) -> None:
    """Write an encrypted backup of the site while the appliance keeps serving."""
    from bastion.entrypoints import admin
    from bastion.services import backups
    from bastion.services.errors import ServiceError

    try:
        backups.check_new_passphrase(passphrase)
        with console.status("Writing the backup..."):
            path = backups.write_file(
                admin.backup_site(_settings(data, database_url)), out, passphrase, "backup"
            )
    except ServiceError as error:
        console.print(f"[red]No backup written:[/] {error}")
        raise typer.Exit(2) from None
    console.print(f"Backup written to {path} ({path.stat().st_size:,} bytes).")


@backup_app.command("inspect")
def backup_inspect(
    path: Annotated[Path, typer.Argument(help="A backup file.", exists=True, dir_okay=False)],
) -> None:
    """Show what a backup is (its header); needs no passphrase."""
    from bastion.adapters.backup_file import read_header
    from bastion.domain.backup_format import BackupError
    from bastion.services import backups

    try:
        header = read_header(path)
    except BackupError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    for name, value in backups.describe(header).items():
        console.print(f"{name:>17}: {value}")


@backup_app.command("restore")
def backup_restore(
    path: Annotated[Path, typer.Argument(help="A backup file.", exists=True, dir_okay=False)],
    passphrase: PassphraseOption,
    data: DataOption = Path("var/appliance"),
    database_url: Annotated[str | None, typer.Option(help="PostgreSQL URL, if used.")] = None,
) -> None:
    """Replace the site in DATA with the backup (verified first; all-or-nothing)."""
    from bastion.entrypoints import admin
    from bastion.services import backups
    from bastion.services.errors import ServiceError

    site = admin.backup_site(_settings(data, database_url))
    try:
        with console.status("Verifying and restoring..."), path.open("rb") as upload:
            report = backups.restore(site, admin.console_actor(), upload, passphrase)
    except ServiceError as error:
        console.print(f"[red]Not restored:[/] {error}")
        raise typer.Exit(2) from None
    console.print(
        f"Restored {sum(report.rows.values()):,} rows of site {report.header.metadata.site_name}; "
        f"the previous site is kept in {report.automatic_backup}."
    )


def _settings(data: Path, database_url: str | None) -> ApplianceSettings:
    overrides: dict[str, object] = {"data_dir": data}
    if database_url:
        overrides["database_url"] = database_url
    return ApplianceSettings(**overrides)  # type: ignore[arg-type]


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
    from bastion.adapters.slots import CURRENT, Releases

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
