"""`bastion console sign-in|sign-out|list|jump|about`: the access console, with which a
representative reaches Jump Items through the site."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bastion.access_console import saved, upgrading
from bastion.access_console.errors import ConsoleError, NotSignedInError
from bastion.access_console.protocol import JumpItem, LiveSessionInfo
from bastion.access_console.rules import Step, next_step

if TYPE_CHECKING:
    from bastion.access_console.client import ConsoleClient

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
console_app = typer.Typer(
    help="The access console: sign in to a site, list its Jump Items, jump to one.",
    no_args_is_help=True,
)


@console_app.callback()
def _start() -> None:
    """Run the build the console last upgraded itself to, when it is newer than this code."""
    from bastion.platform import build

    lib = upgrading.lib_to_run(build.site_version())
    if lib is not None:
        upgrading.run_from(lib)


def _fail(error: ConsoleError) -> NoReturn:
    err.print(f"[red]{escape(str(error))}[/]")
    raise typer.Exit(2)


def _signed_in() -> ConsoleClient:
    from bastion.access_console.client import ConsoleClient

    kept = saved.load()
    ca_file = Path(kept.ca_file) if kept.ca_file else None
    return ConsoleClient(kept.site, ca_file, token=kept.token)


def _keep_up(client: ConsoleClient) -> None:
    """Before a command: a site of another version has this console upgrade itself to it
    and run the command again there (R10); a site of an older version is refused."""
    from bastion.platform import build

    mine, left = build.site_version(), upgrading.upgraded_from()
    site = client.about().site_version
    step = next_step(mine, site, left)
    if step is Step.RUN:
        return
    if step is Step.STILL_DIFFERENT:
        err.print(f"The site runs {escape(site)}; its build is {escape(mine)}. Going on as is.")
        return
    if step is Step.SITE_OLDER:
        raise ConsoleError(_older_site(site, mine))
    try:
        made = upgrading.upgrade(client, site, upgrading.home())
    except ConsoleError as error:
        err.print(
            f"This console could not upgrade itself to the site's {escape(site)} "
            f"({escape(str(error))}); it goes on as {escape(mine)}."
        )
        return
    client.close()
    err.print(f"The site runs {escape(site)}; this console upgraded itself from {escape(mine)}.")
    upgrading.run_from(made.lib, upgraded_from=mine)


def _older_site(site: str, mine: str) -> str:
    where = upgrading.home()
    fix = (
        f"remove {where} to run the console installed here, or install the access console of {site}"
        if upgrading.running_a_build()
        else f"install the access console of {site}"
    )
    return (
        f"The site runs {site}, older than this console ({mine}); a console does not go back "
        f"to an older version by itself: {fix}. A console installed ahead of the site's "
        f"upgrade to {mine} works once the site runs it."
    )


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True))


@console_app.command("sign-in")
def sign_in(
    site: Annotated[str, typer.Option(help="The site: https://HOST[:PORT].")],
    username: Annotated[str, typer.Option(help="Your username on the site.")],
    ca_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Trust only this CA (PEM) for the site, instead of the system's authorities.",
        ),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from the first line of stdin.")
    ] = False,
) -> None:
    """Sign in to a site; the sign-in is kept for the other commands (owner-only file)."""
    from bastion.access_console.client import ConsoleClient

    password = _password(password_stdin)
    try:
        with ConsoleClient(site, ca_file) as client:
            signed = client.sign_in(username, password)
    except ConsoleError as error:
        _fail(error)
    kept = saved.SavedSignIn(
        site=client.site,
        token=signed.token,
        username=signed.username,
        expires_at=signed.expires_at.isoformat(),
        ca_file=str(ca_file.resolve()) if ca_file else None,
    )
    saved.save(kept)
    who = escape(signed.display_name or signed.username)
    out.print(
        f"Signed in to {client.site} as {who} ({escape(signed.role)}) "
        f"until {signed.expires_at:%Y-%m-%d %H:%M %Z}."
    )


@console_app.command("sign-out")
def sign_out() -> None:
    """Sign out of the site, and forget the sign-in here."""
    try:
        client = _signed_in()
    except NotSignedInError:
        out.print("Not signed in.")
        return
    except ConsoleError as error:
        saved.forget()
        _fail(error)
    with client:
        try:
            client.sign_out()
        except ConsoleError as error:
            err.print(f"The site did not take the sign-out ({escape(str(error))}).")
    saved.forget()
    out.print(f"Signed out of {client.site}.")


@console_app.command("list")
def list_items() -> None:
    """The Jump Items you may reach, and whether each can be jumped to now."""
    try:
        with _signed_in() as client:
            _keep_up(client)
            items = client.jump_items()
    except ConsoleError as error:
        _fail(error)
    if not items:
        out.print("No Jump Items.")
        return
    table = Table("ID", "Name", "Hostname", "Group", "Status", "Version", "Jump")
    for item in items:
        jump = "yes" if item.jumpable else f"no: {item.reason}" if item.reason else "no"
        row = (item.id, item.name, item.hostname, item.group, item.status, item.version, jump)
        table.add_row(*(escape(str(cell)) for cell in row))
    out.print(table)


def pick(items: Sequence[JumpItem], wanted: str) -> JumpItem:
    """The Jump Item `wanted` names: its id, its name, else its name or hostname in any case."""
    found = [item for item in items if wanted.isdigit() and item.id == int(wanted)]
    found = found or [item for item in items if item.name == wanted]
    if not found:
        folded = wanted.casefold()
        found = [i for i in items if folded in (i.name.casefold(), i.hostname.casefold())]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConsoleError(f"No Jump Item is named {wanted!r}; `bastion console list` shows them.")
    which = ", ".join(f"{item.id} ({item.name}, {item.hostname})" for item in found)
    raise ConsoleError(f"Several Jump Items match {wanted!r}: {which}; give its name.")


@console_app.command("jump")
def jump(
    name_or_id: Annotated[str, typer.Argument(metavar="NAME_OR_ID", help="A Jump Item.")],
) -> None:
    """Open a session on a Jump Item: its shell, in this terminal, until it exits."""
    from bastion.access_console.terminal import relay, terminal_size

    try:
        with _signed_in() as client:
            _keep_up(client)
            item = pick(client.jump_items(), name_or_id)
            cols, rows = terminal_size(0) or terminal_size(1) or (80, 24)
            opened = client.open_session(item.id, cols, rows, item.kind)
            outcome = asyncio.run(relay(client.terminal_url(opened), client.tls, opened.token))
    except ConsoleError as error:
        _fail(error)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if outcome.code is None:
        err.print(f"The session ended: {escape(outcome.reason)}")
    raise typer.Exit(outcome.status)


@console_app.command("watch")
def watch(
    session_id: Annotated[
        str | None,
        typer.Argument(metavar="[SESSION_ID]", help="A session in progress; none: list them."),
    ] = None,
) -> None:
    """Administrators: list the sessions in progress, or watch one, read-only, until it
    ends (Ctrl-C leaves it running)."""
    from bastion.access_console import terminal

    try:
        with _signed_in() as client:
            _keep_up(client)
            if session_id is None:
                _list_live(client.live_sessions())
                return
            opened, url = client.watch(session_id)

            def told(text: str) -> None:
                err.print(escape(text) + " Ctrl-C leaves it.")

            outcome = asyncio.run(terminal.watch(url, client.tls, opened.token, told=told))
    except ConsoleError as error:
        _fail(error)
    except KeyboardInterrupt:
        err.print("Left the session; it goes on.")
        return
    err.print(f"The session ended: {escape(outcome.reason)}")


def _list_live(sessions: Sequence[LiveSessionInfo]) -> None:
    if not sessions:
        out.print("No sessions in progress.")
        return
    table = Table("Session", "Representative", "Endpoint", "Started", "Size", "Watchers")
    for live in sessions:
        started = live.started_at.isoformat(timespec="seconds") if live.started_at else "waiting"
        size = f"{live.cols}x{live.rows}"
        row = (live.session_id, live.representative, live.endpoint, started, size, live.watchers)
        table.add_row(*(escape(str(cell)) for cell in row))
    out.print(table)


@console_app.command("about")
def about() -> None:
    """This console's version and build, and the site's."""
    from bastion.platform import build

    mine = build.site_version()
    out.print(f"access console {mine} (build {build.build_id()})")
    if upgrading.running_a_build():
        out.print(f"running the build it upgraded itself to, in {escape(str(upgrading.home()))}")
    try:
        with _signed_in() as client:
            site = client.about()
    except NotSignedInError:
        out.print("site: not signed in")
        return
    except ConsoleError as error:
        _fail(error)
    out.print(
        f"site {escape(site.site)} {escape(site.site_version)} (build {escape(site.site_build)})"
    )
    step = next_step(mine, site.site_version, upgrading.upgraded_from())
    if step is Step.UPGRADE:
        out.print("this console upgrades itself to the site's version at its next list or jump")
    elif step is Step.SITE_OLDER:
        out.print(escape(_older_site(site.site_version, mine)))
