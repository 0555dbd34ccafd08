"""`bastion integration-client run`: one pass (`--once`) or a pass every `--every`; with
`--backup-passphrase-file`, each pass also makes and keeps a backup of the site.

Exit codes: 0 done (or stopped by SIGTERM/SIGINT after the current file); 1 the site
refused, could not be reached or its certificate is not trusted, or a file failed to
verify (with --every: tried again next pass); 2 a wrong command line (including a
secret file that cannot be read); 3 the site runs another version of Bastion: install the
integration client of that version; 4 the site refused the client id or secret.
"""

from __future__ import annotations

import random
import re
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from bastion.integration_client.errors import (
    IntegrationError,
    VersionMismatchError,
    WrongSecretError,
)
from bastion.integration_client.pull import BackupPlan, Credentials, PassReport, run_pass
from bastion.integration_client.site import SiteClient

EXIT_FAILED, EXIT_USAGE, EXIT_VERSION, EXIT_CREDENTIALS = 1, 2, 3, 4
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_JITTER = 5.0

integration_app = typer.Typer(
    help="Pull session reports, recordings and backups off a site into a directory.",
    no_args_is_help=True,
)


def parse_every(text: str) -> float:
    """`90s`, `15m`, `1h30m`, `1d`: seconds, at least one."""
    parts = re.fullmatch(r"(?:\d+[smhd])+", text.strip())
    if not parts:
        raise typer.BadParameter("give a duration such as 30s, 15m, 1h or 1h30m")
    seconds = sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", text))
    if seconds < 1:
        raise typer.BadParameter("the interval must be at least 1s")
    return float(seconds)


def _say(text: str) -> None:
    print(text, flush=True)


def _complain(text: str) -> None:
    print(f"integration-client: {text}", file=sys.stderr, flush=True)


def _summary(report: PassReport) -> str:
    parts = [f"{len(report.fetched)} new session(s) saved"]
    if report.refetched:
        parts.append(f"{len(report.refetched)} fetched again because a saved file had changed")
    if report.waiting:
        parts.append(f"{len(report.waiting)} waiting for their recording")
    if report.live:
        parts.append(f"{report.live} live (saved once ended)")
    return "Pass done: " + "; ".join(parts) + ("; stopped early." if report.stopped else ".")


def _read_secret(path: Path) -> str:
    try:
        secret = path.read_text().strip()
    except OSError as error:
        raise typer.BadParameter(f"cannot read {path}: {error.strerror}") from None
    if not secret:
        raise typer.BadParameter(f"{path} is empty")
    return secret


class _Stop:
    """Set by SIGTERM or SIGINT: the pass ends after the current file, the loop after it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._set)

    def _set(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


def _one_pass(
    site: SiteClient, credentials: Credentials, into: Path, stop: _Stop, backups: BackupPlan | None
) -> int:
    report = run_pass(
        site, credentials, into, stop.event.is_set, lambda sid: _say(f"saved {sid}"), backups
    )
    if report.backup is not None:
        _say(f"backup {report.backup}")
    for sid in report.refetched:
        _complain(f"session {sid}: a saved file no longer matched its digest; fetched again.")
    for problem in report.failed:
        _complain(problem)
    _say(_summary(report))
    return EXIT_FAILED if report.failed else 0


@integration_app.command("run")
def run(
    site: Annotated[str, typer.Option(help="The site: https://HOST[:PORT].")],
    client_id: Annotated[str, typer.Option(help="The API client's id.")],
    client_secret_file: Annotated[
        Path, typer.Option(help="A file holding the API client's secret (and nothing else).")
    ],
    into: Annotated[Path, typer.Option("--dir", help="The directory to fill; created.")],
    ca_file: Annotated[
        Path | None, typer.Option(help="Trust only this CA (PEM) for the site's certificate.")
    ] = None,
    every: Annotated[str, typer.Option(help="Interval between passes: 30s, 15m, 1h...")] = "15m",
    once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False,
    backup_passphrase_file: Annotated[
        Path | None,
        typer.Option(help="Also make a backup of the site each pass, under this passphrase."),
    ] = None,
    keep_backups: Annotated[
        int, typer.Option(min=1, help="Backups to keep in DIR/backups (the newest).")
    ] = 7,
) -> None:
    """Save every ended session's report and recording into --dir, verified; resume on
    the next pass where the last one stopped. Refuses (exit 3) when the site runs
    another version: install the integration client of that version."""
    interval = parse_every(every)
    credentials = Credentials(client_id, _read_secret(client_secret_file))
    backups = (
        BackupPlan(_read_secret(backup_passphrase_file), keep_backups)
        if backup_passphrase_file
        else None
    )
    stop = _Stop()
    while True:
        code = _guarded_pass(site, ca_file, credentials, into, stop, backups)
        if code in (EXIT_VERSION, EXIT_CREDENTIALS) or once or stop.event.is_set():
            raise typer.Exit(code)
        if stop.event.wait(interval + random.uniform(0, MAX_JITTER)):
            raise typer.Exit(0)


def _guarded_pass(
    site: str,
    ca_file: Path | None,
    credentials: Credentials,
    into: Path,
    stop: _Stop,
    backups: BackupPlan | None,
) -> int:
    try:
        with SiteClient(site, ca_file) as client:
            return _one_pass(client, credentials, into, stop, backups)
    except VersionMismatchError as error:
        _complain(str(error))
        return EXIT_VERSION
    except WrongSecretError as error:
        _complain(str(error))
        return EXIT_CREDENTIALS
    except IntegrationError as error:  # unreachable, TLS, refused: tried again next pass
        _complain(str(error))
        return EXIT_FAILED
