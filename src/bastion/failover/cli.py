"""`bastion failover key|establish|status`: the pair from the appliance's console, wired
as the pages and the API wire it."""

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

failover_app = typer.Typer(help="Failover pairs of appliances.", no_args_is_help=True)


def _address(text: str, option: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdigit():
        raise typer.BadParameter(f"{text!r} is not HOST:PORT", param_hint=option)
    return host.strip("[]"), int(port)


@failover_app.command("key")
def set_key(
    ctx: typer.Context,
    key: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="BASTION_INTER_APPLIANCE_KEY",
            help="The inter-appliance key, the same on both appliances (or "
            "BASTION_INTER_APPLIANCE_KEY).",
        ),
    ],
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Set the inter-appliance key (stored sealed; never sent to the peer)."""
    from bastion.failover import service as failover
    from bastion.platform.errors import ServiceError

    with console_runtime(ctx, data, database_url) as runtime, runtime.uow() as uow:
        try:
            failover.set_key(uow, runtime.part(failover.FailoverSetup), console_actor(), key)
        except ServiceError as error:
            console.print(f"[red]Not set:[/] {error}")
            raise typer.Exit(2) from None
        uow.commit()
    console.print("The inter-appliance key is set.")


@failover_app.command("establish")
def establish(
    ctx: typer.Context,
    backup: Annotated[str, typer.Option(help="The backup appliance's own HOST:PORT (TLS).")],
    reverse: Annotated[
        str, typer.Option(help="HOST:PORT (TLS) at which the backup reaches this appliance.")
    ],
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
) -> None:
    """From the intended primary: make BACKUP its backup (checked in both directions)."""
    from bastion.failover import service as failover
    from bastion.failover.rules import PeerAddress
    from bastion.platform.errors import ServiceError

    request = failover.EstablishRequest(
        PeerAddress(*_address(backup, "--backup")), PeerAddress(*_address(reverse, "--reverse"))
    )
    with console_runtime(ctx, data, database_url) as runtime, runtime.uow() as uow:
        setup = runtime.part(failover.FailoverSetup)
        try:
            with console.status(f"Reaching {request.backup} and back..."):
                established = failover.establish(uow, setup, console_actor(), request)
        except ServiceError as error:
            console.print(f"[red]Not established:[/] {error}")
            raise typer.Exit(2) from None
        uow.commit()
    console.print(f"This appliance is now the primary; {request.backup} is its backup.")
    console.print(established.merged.summary())


@failover_app.command("status")
def status(
    ctx: typer.Context, data: DataOption = DEFAULT_DATA, database_url: DatabaseUrlOption = None
) -> None:
    """This appliance's role, its peer and the last sync."""
    from bastion.failover import service as failover
    from bastion.failover import state
    from bastion.failover.rules import Role

    with console_runtime(ctx, data, database_url) as runtime:
        setup = runtime.part(failover.FailoverSetup)
        pair = setup.pair()
    console.print(f"role: {pair.role.value}")
    if pair.peer:
        console.print(f"peer: {pair.peer.host}:{pair.peer.port} (SHA-256 {pair.peer.fingerprint})")
    if pair.role_since:
        console.print(f"role since: {pair.role_since}")
    if pair.last_sync_time:
        console.print(f"last sync: {pair.last_sync_time} ({pair.last_sync_status})")
    checked = state.read_status(setup.state_dir)
    if pair.role is not Role.NONE and checked.checked_at:
        seen = f"peer: {checked.status}" + (f", {checked.peer_role}" if checked.peer_role else "")
        console.print(f"{seen} (checked {checked.checked_at})")
        if checked.message:
            console.print(f"[yellow]{checked.message}[/]")


@failover_app.command("sync")
def sync_now(
    ctx: typer.Context, data: DataOption = DEFAULT_DATA, database_url: DatabaseUrlOption = None
) -> None:
    """Sync Now: the backup pulls the primary's changes and blobs; returns once done."""
    from bastion.failover import service as failover
    from bastion.platform.errors import ServiceError

    with console_runtime(ctx, data, database_url) as runtime, runtime.uow() as uow:
        try:
            with console.status("Syncing..."):
                pair = failover.sync_now(uow, runtime.part(failover.FailoverSetup), console_actor())
        except ServiceError as error:
            console.print(f"[red]Not synced:[/] {error}")
            raise typer.Exit(2) from None
        uow.commit()
    console.print(f"Synced at {pair.last_sync_time}: {pair.last_sync_status}.")


@failover_app.command("break")
def break_pair(
    ctx: typer.Context, data: DataOption = DEFAULT_DATA, database_url: DatabaseUrlOption = None
) -> None:
    """Break Failover Relationship: this appliance and its peer become standalone."""
    from bastion.failover import service as failover
    from bastion.platform.errors import ServiceError

    with console_runtime(ctx, data, database_url) as runtime, runtime.uow() as uow:
        try:
            left_as_is = failover.break_pair(
                uow, runtime.part(failover.FailoverSetup), console_actor()
            )
        except ServiceError as error:
            console.print(f"[red]Not broken:[/] {error}")
            raise typer.Exit(2) from None
        uow.commit()
    console.print("The pair is broken: this appliance is standalone.")
    if left_as_is:
        console.print(f"[yellow]{left_as_is}[/]")


NoSyncOption = Annotated[
    bool, typer.Option("--no-sync", help="Change roles without bringing the backup up to date.")
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force", help="Change this appliance's role even though the peer cannot be reached."
    ),
]


def _swap(ctx: typer.Context, data: Path, database_url: str | None, to: str, **how: bool) -> None:
    from bastion.failover import service as failover
    from bastion.failover import swap
    from bastion.platform.errors import ServiceError

    use_case = swap.become_primary if to == "primary" else swap.become_backup
    with console_runtime(ctx, data, database_url) as runtime, runtime.uow() as uow:
        try:
            with console.status(f"Becoming the {to}..."):
                pair = use_case(uow, runtime.part(failover.FailoverSetup), console_actor(), **how)
        except ServiceError as error:
            console.print(f"[red]Roles not changed:[/] {error}")
            raise typer.Exit(2) from None
        uow.commit()
    console.print(f"This appliance is now the {pair.role.value}.")
    if pair.details.get("forced"):
        console.print(
            "[yellow]The peer was not told: until it is, it may claim the same role (a split "
            "brain, fixed with `bastion failover fix-split-brain`).[/]"
        )


@failover_app.command("become-primary")
def become_primary(
    ctx: typer.Context,
    no_sync: NoSyncOption = False,
    force: ForceOption = False,
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
) -> None:
    """On the backup: take over; the primary steps down first."""
    _swap(ctx, data, database_url, "primary", sync_first=not no_sync, force=force)


@failover_app.command("become-backup")
def become_backup(
    ctx: typer.Context,
    no_sync: NoSyncOption = False,
    force: ForceOption = False,
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
) -> None:
    """On the primary: step down and have the backup take over."""
    _swap(ctx, data, database_url, "backup", sync_first=not no_sync, force=force)


@failover_app.command("fix-split-brain")
def fix_split_brain(
    ctx: typer.Context, data: DataOption = DEFAULT_DATA, database_url: DatabaseUrlOption = None
) -> None:
    """Both appliances claim the same role: this one's data wins and it is the primary."""
    from bastion.failover import service as failover
    from bastion.failover import swap
    from bastion.platform.errors import ServiceError

    with console_runtime(ctx, data, database_url) as runtime, runtime.uow() as uow:
        try:
            swap.fix_split_brain(uow, runtime.part(failover.FailoverSetup), console_actor())
        except ServiceError as error:
            console.print(f"[red]Not fixed:[/] {error}")
            raise typer.Exit(2) from None
        uow.commit()
    console.print("Fixed: this appliance is the primary and its peer its backup.")


@failover_app.command("site-check")
def site_check(
    ctx: typer.Context,
    wait: Annotated[
        float,
        typer.Option(help="Keep checking, every 2 s, up to this many seconds (after a NAT swing)."),
    ] = 0.0,
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Where the site's public address leads: exit 0 once it leads to the primary."""
    import time

    from bastion.failover import service as failover
    from bastion.failover import swap

    with console_runtime(ctx, data, database_url) as runtime:
        setup = runtime.part(failover.FailoverSetup)
    deadline = time.monotonic() + wait
    while True:
        checked = swap.check_site_address(setup)
        if checked.leads_to_primary or time.monotonic() >= deadline:
            break
        time.sleep(2)
    console.print(checked.message, markup=False)
    if not checked.leads_to_primary:
        raise typer.Exit(1)


@failover_app.command("sync-interval")
def sync_interval(
    ctx: typer.Context,
    seconds: Annotated[int, typer.Argument(help="60 to 86,400.")],
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Set how often the backup pulls (the site's setting; on the primary)."""
    from bastion.failover import service as failover
    from bastion.platform.errors import ServiceError

    with console_runtime(ctx, data, database_url) as runtime, runtime.uow() as uow:
        try:
            failover.set_sync_interval(
                uow, runtime.part(failover.FailoverSetup), console_actor(), seconds
            )
        except ServiceError as error:
            console.print(f"[red]Not set:[/] {error}")
            raise typer.Exit(2) from None
        uow.commit()
    console.print(f"The backup pulls every {seconds} seconds.")


# -- the pair's upgrade runbook ---------------------------------------------------------------

UpgradePassphraseOption = Annotated[
    str,
    typer.Option(
        "--backup-passphrase",
        prompt="Passphrase for the backup taken first",
        hide_input=True,
        confirmation_prompt=True,
        envvar="BASTION_BACKUP_PASSPHRASE",
        help="Encrypts the backup taken before anything changes; at least 12 characters, "
        "not kept (or BASTION_BACKUP_PASSPHRASE).",
    ),
]


def _print_upgrade(report: dict[str, object], printed: set[tuple[str, str]] | None = None) -> None:
    """Each step's state; with `printed`, only the lines not printed before."""
    from rich.markup import escape

    steps = report.get("steps")
    for step in steps if isinstance(steps, list) else []:
        line = f"{step['state']:>8}  {step['title']}"
        said = step.get("error") or step.get("detail") or ""
        if said and step["state"] in ("done", "failed"):
            line += f": {said}"
        if printed is not None:
            if (step["name"], step["state"]) in printed:
                continue
            printed.add((step["name"], step["state"]))
        console.print(escape(line))


def _upgrade_end(report: dict[str, object]) -> None:
    from rich.markup import escape

    state = report["state"]
    message = escape(str(report.get("message", "")))
    console.print(f"Upgrade {state} after {report['total_seconds']} s. {message}")
    if state != "done":
        raise typer.Exit(1)


def _follow(state_dir: Path) -> None:
    """Print the steps as they change until the runbook stops, fails or is done."""
    import time

    from bastion.failover import upgrade as upgrading

    printed: set[tuple[str, str]] = set()
    while True:
        runbook = upgrading.read(state_dir)
        if runbook is None:
            raise typer.Exit(1)
        report = upgrading.report(runbook)
        _print_upgrade(report, printed)
        if runbook.state != upgrading.RUNNING:
            _upgrade_end(report)
            return
        time.sleep(2)


@failover_app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    releases: Annotated[list[str], typer.Argument(help="Releases, e.g. 'site 1.2.0'.")],
    mode: Annotated[
        str,
        typer.Option(
            help="sync: this appliance (the primary) first, the site down while it installs; "
            "async: the backup first, tried, then it takes the site."
        ),
    ],
    backup_passphrase: UpgradePassphraseOption,
    accept_licence: Annotated[
        bool, typer.Option(help="Accept the licence agreement of a new major version.")
    ] = False,
    accept_offline_clients: Annotated[
        bool, typer.Option(help="Install though some Jump Clients lack the new trust anchors.")
    ] = False,
    wait: Annotated[bool, typer.Option(help="Follow the steps until the end.")] = True,
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
) -> None:
    """On the primary: upgrade both appliances of the pair as one operation (preflight,
    backup, sync, break, install, verify, swing, install, establish). The appliance runs
    the steps; leaving this command does not stop them."""
    from bastion.failover import service as failover
    from bastion.failover import upgrade as upgrading
    from bastion.platform.errors import ServiceError

    if mode not in ("sync", "async"):
        raise typer.BadParameter("choose sync or async", param_hint="--mode")
    request = upgrading.UpgradeRequest(
        [" ".join(r.split()) for r in releases],
        upgrading.Mode(mode),
        backup_passphrase,
        accept_licence,
        accept_offline_clients,
    )
    with console_runtime(ctx, data, database_url) as runtime, runtime.uow() as uow:
        setup = runtime.part(failover.FailoverSetup)
        installer = runtime.part(upgrading.UpgradeSetup).installer
        try:
            with console.status("Preflight and backup..."):
                runbook = upgrading.start(uow, setup, installer, console_actor(), request)
        except ServiceError as error:
            console.print(f"[red]Not started:[/] {error}")
            raise typer.Exit(2) from None
        uow.commit()
    console.print(f"Started ({runbook.mode.value}); the backup is {runbook.backup_file}.")
    console.print("The appliance goes on with the steps; `bastion failover upgrade-status`.")
    if wait:
        _follow(setup.state_dir)


@failover_app.command("upgrade-status")
def upgrade_status(
    ctx: typer.Context,
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
    follow: Annotated[bool, typer.Option(help="Follow the steps until the end.")] = False,
) -> None:
    """The pair's upgrade: each step, and where it stopped (exit 1 unless done)."""
    from bastion.failover import service as failover
    from bastion.failover import upgrade as upgrading

    with console_runtime(ctx, data, database_url) as runtime:
        state_dir = runtime.part(failover.FailoverSetup).state_dir
    runbook = upgrading.read(state_dir)
    if runbook is None:
        console.print("No upgrade of the pair was started on this appliance.")
        raise typer.Exit(1)
    if follow:
        _follow(state_dir)
        return
    report = upgrading.report(runbook)
    _print_upgrade(report)
    _upgrade_end(report)


@failover_app.command("upgrade-control")
def upgrade_control(
    ctx: typer.Context,
    action: Annotated[str, typer.Argument(help="stop, resume or forget.")],
    data: DataOption = DEFAULT_DATA,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Stop the pair's upgrade before its next step, resume it where it stopped or
    failed (the appliance goes on with it), or forget one that is not running."""
    from bastion.failover import service as failover
    from bastion.failover import upgrade as upgrading
    from bastion.platform.errors import ServiceError

    actions = {"stop": upgrading.stop, "resume": upgrading.resume, "forget": upgrading.forget}
    if action not in actions:
        raise typer.BadParameter("choose stop, resume or forget", param_hint="ACTION")
    with console_runtime(ctx, data, database_url) as runtime:
        setup = runtime.part(failover.FailoverSetup)
    try:
        actions[action](setup)
    except ServiceError as error:
        console.print(f"[red]Not done:[/] {error}")
        raise typer.Exit(2) from None
    said = {"stop": "It stops before its next step.", "resume": "The appliance goes on with it.",
            "forget": "Forgotten (its backup file stays)."}  # fmt: skip
    console.print(said[action])
