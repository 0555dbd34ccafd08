"""`bastion appliance fleet status`: the Jump Client fleet's upgrade progress (R20)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bastion.platform.cli import DEFAULT_DATA, DataOption, console, console_runtime

fleet_app = typer.Typer(help="The Jump Client fleet.", no_args_is_help=True)


@fleet_app.command("status")
def status(
    ctx: typer.Context,
    data: DataOption = DEFAULT_DATA,
    as_json: Annotated[bool, typer.Option("--json", help="Print the progress as JSON.")] = False,
) -> None:
    """How far the fleet is on its upgrade to the site's version: upgraded, pending,
    upgrading, failed, offline; and why the rollout halted, if it did."""
    from dataclasses import asdict

    from bastion.jump_clients import upgrades
    from bastion.jump_clients.service import JumpClientsSetup

    with console_runtime(ctx, data) as runtime, runtime.uow() as uow:
        progress = upgrades.progress(uow, runtime.part(JumpClientsSetup).site_version)
    if as_json:
        typer.echo(json.dumps(asdict(progress)))
        return
    console.print(
        f"Site version {progress.site_version}: {progress.upgraded} of {progress.total} "
        f"upgraded, {progress.pending} pending, {progress.upgrading} upgrading, "
        f"{progress.failed} failed, {progress.offline} offline."
    )
    if progress.halted:
        console.print(f"[red]The rollout halted:[/] {progress.halted}")
