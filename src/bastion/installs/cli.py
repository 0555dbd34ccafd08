"""`bastion appliance install NAME...` and `bastion appliance install-status`.

The install is planned through the same service as the Updates page (order,
estimate, licence of a new major version), handed to the running supervisor,
and followed with a progress bar until the supervisor is idle again.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bastion.platform.cli import (
    DEFAULT_DATA,
    DataOption,
    console,
    console_actor,
    console_runtime,
    run_step,
)
from bastion.supervisor.journal import Outcome

if TYPE_CHECKING:
    from bastion.installs.service import InstallPlan
    from bastion.platform.unit_of_work import UnitOfWork
    from bastion.supervisor.client import SupervisorClient
    from bastion.supervisor.journal import HistoryEntry
    from bastion.supervisor.messages import PendingInstall, SupervisorStatus

install_app = typer.Typer(no_args_is_help=True)
"""Holds `install` and `install-status`; added to `bastion appliance` without a name."""
POLL_SECONDS = 0.5
RESTART_GRACE_SECONDS = 90.0
"""How long the supervisor may be unreachable: a base install re-executes it."""
IDLE_POLLS = 10


@install_app.command("install")
def install(
    ctx: typer.Context,
    names: Annotated[
        list[str], typer.Argument(metavar="NAME...", help='Downloaded releases, e.g. "site 1.1".')
    ],
    data: DataOption = DEFAULT_DATA,
    accept_licence: Annotated[
        bool, typer.Option("--accept-licence", help="Accept a new major version's licence.")
    ] = False,
    delay: Annotated[int, typer.Option("--delay", help="Start after MINUTES.")] = 0,
    at: Annotated[str, typer.Option("--at", help="Start at this UTC time (ISO 8601).")] = "",
    retry: Annotated[bool, typer.Option("--retry", help="Install a rolled-back release.")] = False,
    accept_offline_clients: Annotated[
        bool,
        typer.Option(
            "--accept-offline-clients",
            help="Install a release built with other trust anchors although Jump Clients "
            "that do not trust them would go offline.",
        ),
    ] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Do not follow the install.")] = False,
) -> None:
    """Install downloaded base and site releases, in dependency order, on the running appliance."""
    from bastion.installs import schedule as install_schedule
    from bastion.installs import service as installs
    from bastion.supervisor.client import SupervisorClient

    with console_runtime(ctx, data) as runtime:
        setup = runtime.part(installs.InstallsSetup)

        def request(uow: UnitOfWork) -> tuple[InstallPlan, PendingInstall]:
            start = install_schedule.start_time(delay * 60, install_schedule.parse_utc(at))
            chosen = installs.plan(uow, setup, names, retry)
            _show_plan(chosen, start)
            offline = accept_offline_clients or _accept_offline(chosen)
            accepted = accept_licence or _accept_licences(chosen)
            answer = installs.submit(
                uow, setup, console_actor(), chosen, accepted, start, accepted_offline=offline
            )
            return chosen, answer

        chosen, answer = run_step(runtime, request, "Install refused")
        supervisor = runtime.part(SupervisorClient)
    console.print(f"Install {answer.install_id} starts at {answer.not_before}.")
    if no_wait:
        console.print("Follow it with `bastion appliance install-status`.")
        return
    entries = _follow(supervisor, answer.install_id, len(chosen.releases))
    raise typer.Exit(_report(entries))


def _show_plan(chosen: InstallPlan, start: datetime | None) -> None:
    for number, release in enumerate(chosen.releases, 1):
        console.print(f"  {number}. {release.name}")
    when = f"at {start:%Y-%m-%d %H:%M} UTC" if start else "at once"
    estimate = chosen.estimate
    console.print(
        f"Estimated time: {estimate.seconds:g} s: {estimate.breakdown} (a database of "
        f"{estimate.database_bytes:,} bytes); starts {when}. Everyone signed in is "
        "signed out when the new version takes over."
    )


def _accept_offline(chosen: InstallPlan) -> bool:
    """Name the Jump Clients each release would take offline and ask; no installs nothing."""
    for name, check in chosen.offline.items():
        console.print(
            f"[yellow]{name} was built with other trust anchors: {check.offline:,} of "
            f"{check.total:,} Jump Clients do not trust them and would go offline.[/yellow]"
        )
        if not typer.confirm("Install it anyway?"):
            return False
    return bool(chosen.offline)


def _accept_licences(chosen: InstallPlan) -> bool:
    """Show each licence agreement and ask; a refusal installs nothing."""
    for name, text in chosen.licences.items():
        console.print(Panel(text, title=f"Licence agreement of {name}"))
        if not typer.confirm(f"Do you accept the licence agreement of {name}?"):
            console.print("Nothing was installed.")
            raise typer.Exit(1)
    return bool(chosen.licences)


def _status(supervisor: SupervisorClient) -> SupervisorStatus:
    """The supervisor's status, waiting out a restart (a base install re-executes it)."""
    from bastion.platform.errors import UnavailableError

    deadline = time.monotonic() + RESTART_GRACE_SECONDS
    while True:
        try:
            return supervisor.status()
        except UnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL_SECONDS)


def _entries(status: SupervisorStatus, install_id: str) -> list[HistoryEntry]:
    return [e for e in status.history if e.install_id.split("+")[0] == install_id]


def _follow(supervisor: SupervisorClient, install_id: str, count: int) -> list[HistoryEntry]:
    """Show the steps until the supervisor is idle; the outcomes of this install."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    idle = 0
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("waiting for the supervisor", total=None)
        while True:
            status = _status(supervisor)
            entries = _entries(status, install_id)
            if status.state == "idle":
                idle += 1
                rolled_back = any(e.outcome is Outcome.ROLLED_BACK for e in entries)
                if len(entries) >= count or rolled_back or idle >= IDLE_POLLS:
                    return entries
            else:
                idle = 0
            bar.update(task, **_bar(status))
            time.sleep(POLL_SECONDS)


def _bar(status: SupervisorStatus) -> dict[str, Any]:
    running, pending = status.progress, status.pending
    if running is not None:
        activity = status.activity or running.journal.step.value
        return {
            "description": f"{running.journal.release.name}: {activity}",
            "completed": running.done,
            "total": running.total,
        }
    if pending is not None:
        return {"description": f"scheduled for {pending.not_before}", "total": None}
    return {"description": "waiting for the supervisor", "total": None}


def _report(entries: list[HistoryEntry]) -> int:
    """Print each outcome; 1 if anything was rolled back or nothing ran."""
    if not entries:
        console.print("[red]The install did not run:[/] it was cancelled before it began.")
        return 1
    code = 0
    for entry in entries:
        if entry.outcome is Outcome.ROLLED_BACK:
            console.print(f"[red]{entry.release} was rolled back:[/] {entry.reason}")
            code = 1
        else:
            seconds = entry.details.get("seconds")
            took = f" in {seconds} s" if seconds is not None else ""
            console.print(f"[green]{entry.release} installed{took}.[/]")
    return code


@install_app.command("install-status")
def install_status(
    data: DataOption = DEFAULT_DATA,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show the install in progress or scheduled, and the last outcomes."""
    from bastion.platform.errors import ServiceError
    from bastion.supervisor.client import SupervisorClient

    try:
        status = SupervisorClient(data).status()
    except ServiceError as error:
        console.print(f"[red]No status:[/] {error}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(status.to_wire(), indent=2))
        return
    _print_status(status)


def _print_status(status: SupervisorStatus) -> None:
    console.print(f"State: [bold]{status.state}[/] (base {status.base_version})")
    shown = _bar(status)
    if status.progress is not None:
        console.print(f"  {shown['description']}: step {shown['completed']} of {shown['total']}")
    pending = status.pending
    if pending is not None:
        console.print(
            f"  Scheduled: {pending.names} at {pending.not_before}, "
            f"requested by {pending.requested_by}"
        )
    for kept in status.kept_sessions:
        console.print(
            f"  The previous version ({kept['slot']}) keeps {kept['sessions']} remote "
            f"session(s) that were in progress at the switch, until they end, at the latest "
            f"{kept['until']}. New sessions use the new version."
        )
    if status.history:
        table = Table("Release", "Outcome", "Reason", "At")
        for entry in reversed(status.history):
            table.add_row(entry.release, entry.outcome.value, entry.reason, entry.at)
        console.print(table)
