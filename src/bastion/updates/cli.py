"""`bastion appliance update-key` and `bastion appliance updates ...`, against a data directory.

Installing (`bastion appliance install`, `install-status`) is in `cli_install`.

The update service address, site and trusted root come from the same
``BASTION_UPDATE_*`` settings the appliance reads, through the same wiring.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from bastion.platform.cli import (
    DEFAULT_DATA,
    DataOption,
    console,
    console_actor,
    console_runtime,
    run_step,
)

if TYPE_CHECKING:
    from bastion.platform.unit_of_work import UnitOfWork
    from bastion.updates.channel import Channel
    from bastion.updates.service import ReleaseRow, UpdateSetup

appliance_updates_app = typer.Typer(no_args_is_help=True)
"""Holds `update-key` and `updates ...`; added to `bastion appliance` without a name."""
updates_app = typer.Typer(
    help="Check, download and import updates (see /appliance > Updates).", no_args_is_help=True
)
appliance_updates_app.add_typer(updates_app, name="updates")
T = TypeVar("T")


def _run(
    ctx: typer.Context, data: Path, step: Callable[[UnitOfWork, UpdateSetup], T], failed: str
) -> T:
    """Run one update step on the appliance in `data` and commit it, or say why not."""
    from bastion.updates.service import UpdateSetup

    with console_runtime(ctx, data) as runtime:
        setup = runtime.part(UpdateSetup)
        return run_step(runtime, lambda uow: step(uow, setup), failed)


def _table(rows: list[ReleaseRow]) -> Table:
    table = Table("Release", "State", "Bytes", "Storage")
    for row in rows:
        stored = "downloaded, verified" if row.downloaded else ""
        table.add_row(row.name, row.reason, f"{row.length:,}", stored)
    return table


@appliance_updates_app.command("update-key")
def update_key(
    ctx: typer.Context,
    data: DataOption = DEFAULT_DATA,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print site, appliance id and public key as JSON.")
    ] = False,
) -> None:
    """Print this appliance's update public key (created at first use) for enrolment."""
    from bastion.platform.errors import ServiceError
    from bastion.updates import channel

    try:
        with console_runtime(ctx, data) as runtime:
            found = channel.enrollment(runtime.part(channel.UpdateSetup))
    except ServiceError as error:
        console.print(f"[red]No update key:[/] {error}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(found))
        return
    typer.echo(found["public_key"])


@updates_app.command("check")
def check(ctx: typer.Context, data: DataOption = DEFAULT_DATA) -> None:
    """Ask the update service which releases this appliance may install."""
    from bastion.updates import service as updates

    actor = console_actor()
    rows = _run(ctx, data, lambda uow, setup: updates.check(uow, setup, actor), "Check failed")
    console.print(_table(rows) if rows else "No releases are available for this appliance.")


@updates_app.command("download")
def download(
    ctx: typer.Context,
    release: Annotated[str, typer.Argument(help='The release as listed, e.g. "base 1.1".')],
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Download and verify one release; it waits in storage until it is installed."""
    from bastion.updates import service as updates

    actor = console_actor()
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(release, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        done = _run(
            ctx,
            data,
            lambda uow, setup: updates.download(uow, setup, actor, release, progress),
            "Download failed",
        )
    console.print(
        f"{done.row.name} downloaded and verified: {done.row.length:,} bytes in "
        f"{done.seconds:.1f} s, stored as {done.path}."
    )


@updates_app.command("import-bundle")
def import_bundle(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The bundle.")],
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Verify an offline bundle exactly like a download and store its releases."""
    from bastion.updates import service as updates

    actor = console_actor()
    done = _run(
        ctx,
        data,
        lambda uow, setup: updates.import_bundle(uow, setup, actor, bundle, bundle.name),
        "Bundle refused",
    )
    console.print(_table(done.rows))
    console.print(done.summary, highlight=False)


@updates_app.command("download-key")
def download_key(ctx: typer.Context, data: DataOption = DEFAULT_DATA) -> None:
    """Print a new Appliance Download Key, for Manual Installation."""
    from bastion.updates import service as updates

    actor = console_actor()
    key = _run(
        ctx, data, lambda uow, setup: updates.download_key(uow, setup, actor), "No download key"
    )
    typer.echo(key.text)


DEFAULTS = ("url", "ca", "trusted-root")


@updates_app.command("settings")
def settings(
    ctx: typer.Context,
    data: DataOption = DEFAULT_DATA,
    url: Annotated[
        str | None, typer.Option("--url", help="The update service URL; '' for the default.")
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", exists=True, dir_okay=False, help="PEM of the service's CA."),
    ] = None,
    trusted_root: Annotated[
        Path | None,
        typer.Option("--trusted-root", exists=True, dir_okay=False, help="The vendor's root.json."),
    ] = None,
    default: Annotated[
        list[str] | None,
        typer.Option("--default", help="Return url, ca or trusted-root to its default."),
    ] = None,
) -> None:
    """Show the update channel (service URL, its CA, trusted root); with options, change it."""
    from bastion.updates import channel

    reset = set(default or [])
    if reset - set(DEFAULTS):
        raise typer.BadParameter(f"--default takes {', '.join(DEFAULTS)}", param_hint="--default")
    change = channel.ChannelChange(
        "" if "url" in reset else url,
        "" if "ca" in reset else _text(ca_file),
        "" if "trusted-root" in reset else _text(trusted_root),
    )
    actor = console_actor()
    found = _run(
        ctx, data, lambda uow, setup: channel.configure(uow, setup, actor, change), "Not changed"
    )
    for line in _channel_lines(found):
        typer.echo(line)


def _text(path: Path | None) -> str | None:
    return None if path is None else path.read_text(errors="replace")


def _channel_lines(found: Channel) -> list[str]:
    """One line a setting (plain text: it is read in scripts and logs as well)."""
    certificates = "; ".join(
        f"{c.subject} (SHA-256 {c.sha256[:16]}…)" for c in found.ca_certificates
    )
    root = found.root
    lines = [
        f"Update service: {found.service_url or 'none'} ({found.notes[0]})",
        f"Its CA:         {certificates or '-'} ({found.notes[1]})",
        "Trusted root:   "
        + (f"version {root.version}, SHA-256 {root.sha256[:16]}…" if root else "none")
        + f" ({found.notes[2]})",
    ]
    return lines + [f"Problem: {problem}" for problem in found.problems]
