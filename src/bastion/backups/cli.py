"""`bastion backup create|inspect|restore`: encrypted backups from the appliance's console,
wired exactly as the pages and the API wire them (the same key vault and restore hooks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bastion.platform.cli import (
    DEFAULT_DATA,
    DatabaseUrlOption,
    DataOption,
    console,
    console_actor,
    console_runtime,
)

backup_app = typer.Typer(help="Encrypted backups of a site.", no_args_is_help=True)
PassphraseOption = Annotated[
    str,
    typer.Option(
        prompt=True,
        hide_input=True,
        envvar="BASTION_BACKUP_PASSPHRASE",
        help="The backup's passphrase (asked for when not given; or BASTION_BACKUP_PASSPHRASE).",
    ),
]
NewPassphraseOption = Annotated[
    str,
    typer.Option(
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        envvar="BASTION_BACKUP_PASSPHRASE",
        help="Passphrase of at least 12 characters; needed to restore.",
    ),
]
BackupFile = Annotated[Path, typer.Argument(help="A backup file.", exists=True, dir_okay=False)]


@backup_app.command("create")
def backup_create(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="Directory to write the backup file into.")],
    passphrase: NewPassphraseOption,
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Write an encrypted backup of the site while the appliance keeps serving."""
    from bastion.backups import service as backups
    from bastion.platform.errors import ServiceError

    with console_runtime(ctx, data, database_url) as runtime:
        site = runtime.part(backups.BackupSite)
        try:
            backups.check_new_passphrase(passphrase)
            with console.status("Writing the backup..."):
                path = backups.write_file(site, out, passphrase, "backup")
        except ServiceError as error:
            console.print(f"[red]No backup written:[/] {error}")
            raise typer.Exit(2) from None
    console.print(f"Backup written to {path} ({path.stat().st_size:,} bytes).")


@backup_app.command("inspect")
def backup_inspect(path: BackupFile) -> None:
    """Show what a backup is (its header); needs no passphrase."""
    from bastion.backups import service as backups
    from bastion.backups.container import read_header
    from bastion.backups.rules import BackupError

    try:
        header = read_header(path)
    except BackupError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    for name, value in backups.describe(header).items():
        console.print(f"{name:>17}: {value}")


@backup_app.command("restore")
def backup_restore(
    ctx: typer.Context,
    path: BackupFile,
    passphrase: PassphraseOption,
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Replace the site in DATA with the backup (verified first; all-or-nothing)."""
    from bastion.backups import service as backups
    from bastion.platform.errors import ServiceError

    with console_runtime(ctx, data, database_url) as runtime:
        site = runtime.part(backups.BackupSite)
        try:
            with console.status("Verifying and restoring..."), path.open("rb") as upload:
                report = backups.restore(site, console_actor(), upload, passphrase)
        except ServiceError as error:
            console.print(f"[red]Not restored:[/] {error}")
            raise typer.Exit(2) from None
    console.print(
        f"Restored {sum(report.rows.values()):,} rows of site {report.header.metadata.site_name}; "
        f"the previous site is kept in {report.automatic_backup}."
    )
