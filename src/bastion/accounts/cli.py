"""`bastion appliance api-client create|revoke`: API clients from the appliance's console."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.platform.cli import (
    DEFAULT_DATA,
    DatabaseUrlOption,
    DataOption,
    console,
    console_actor,
    console_runtime,
    run_step,
)

api_client_app = typer.Typer(
    help="API clients, from the appliance's own console.", no_args_is_help=True
)


@api_client_app.command("create")
def api_client_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name that says who uses the client.")],
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create an API client and print its credentials (the secret is shown only now)."""
    from bastion.accounts import api_clients
    from bastion.accounts.service import AccountsSetup

    with console_runtime(ctx, data, database_url) as runtime:
        hasher = runtime.part(AccountsSetup).hasher
        created = run_step(
            runtime,
            lambda uow: api_clients.create_client(uow, hasher, console_actor(), name),
            "No API client created",
        )
    console.print_json(
        data={"client_id": created.client.client_id, "client_secret": created.client_secret}
    )


@api_client_app.command("revoke")
def api_client_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The API client's name.")],
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Revoke an API client: its tokens stop working at once."""
    from bastion.accounts import api_clients

    with console_runtime(ctx, data, database_url) as runtime:
        run_step(
            runtime,
            lambda uow: api_clients.revoke_client_named(uow, console_actor(), name),
            "Not revoked",
        )
    console.print(f"API client {name!r} revoked.")
