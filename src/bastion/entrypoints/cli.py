"""The `bastion` command: one sub-command per process and per administrative operation."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bastion import release
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
    from bastion.entrypoints import appliance as appliance_entry  # the server's imports, only here

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(appliance_entry.serve(settings, console))
    except appliance_entry.StartupError as error:
        console.print(f"[red]Cannot start:[/] {error}")
        raise typer.Exit(2) from None


api_client_app = typer.Typer(
    help="API clients, from the appliance's own console.", no_args_is_help=True
)
appliance_app.add_typer(api_client_app, name="api-client")
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


def _settings(data: Path, database_url: str | None) -> ApplianceSettings:
    overrides: dict[str, object] = {"data_dir": data}
    if database_url:
        overrides["database_url"] = database_url
    return ApplianceSettings(**overrides)  # type: ignore[arg-type]


def main() -> None:
    app()
