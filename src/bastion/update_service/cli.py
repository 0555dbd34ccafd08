"""``bastion update-service`` (serve) and ``bastion release`` (vendor operations)."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from bastion.releases.packages import PackageInfo, anchor_fingerprints, build_package
from bastion.releases.versions import parse_kind, parse_requirement, parse_version
from bastion.update_service.errors import VENDOR_ERRORS
from bastion.update_service.keys import generate_keys
from bastion.update_service.mail import send_due_notices
from bastion.update_service.settings import UpdateServiceSettings
from bastion.update_service.tuf_repo import DEFAULT_EXPIRY, RepoConfig
from bastion.update_service.vendor import Vendor, init_repository

update_service_app = typer.Typer(help="Run the vendor's update service.", no_args_is_help=True)
release_app = typer.Typer(
    help="Vendor operations: keys, releases, customers, waves.", no_args_is_help=True
)
console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

DataDir = Annotated[
    Path,
    typer.Option(
        "--data", envvar="BASTION_UPDATE_SERVICE_DATA_DIR", help="Service data directory."
    ),
]
KeysDir = Annotated[
    Path,
    typer.Option(
        "--keys", envvar="BASTION_UPDATE_SERVICE_KEYS_DIR", help="Directory of signing key files."
    ),
]
SmtpHost = Annotated[str | None, typer.Option(envvar="BASTION_UPDATE_SERVICE_SMTP_HOST")]
SmtpPort = Annotated[int, typer.Option(envvar="BASTION_UPDATE_SERVICE_SMTP_PORT")]
MailFrom = Annotated[str, typer.Option(envvar="BASTION_UPDATE_SERVICE_MAIL_FROM")]
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 86400}


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn an expected vendor-side failure into a one-line message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except VENDOR_ERRORS as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc

    return wrapper


def parse_duration(text: str) -> int:
    match = _DURATION.match(text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 30s, 12h or 7d")
    return int(match[1]) * _UNITS[match[2]]


def parse_expiry(items: list[str]) -> dict[str, int]:
    expiry = dict(DEFAULT_EXPIRY)
    for item in items:
        role, _, value = item.partition("=")
        if role not in expiry:
            raise typer.BadParameter(
                f"unknown role {role!r} in --expiry (root, targets, snapshot, timestamp)"
            )
        expiry[role] = parse_duration(value)
    return expiry


def with_vendor(data: Path, keys: Path, action: Callable[[Vendor], R]) -> R:
    vendor = Vendor(data, keys)
    try:
        return action(vendor)
    finally:
        vendor.close()


@release_app.command()
@reports_errors
def keygen(keys: KeysDir, root_keys: Annotated[int, typer.Option(min=1)] = 2) -> None:
    """Create Ed25519 key files: root-1..n, targets, snapshot, timestamp."""
    for path in generate_keys(keys, root_keys):
        typer.echo(f"created {path}")


@release_app.command("init-repo")
@reports_errors
def init_repo(
    data: DataDir,
    keys: KeysDir,
    root_threshold: Annotated[int, typer.Option(min=1)] = 1,
    expiry: Annotated[
        list[str] | None, typer.Option(help="role=duration, e.g. timestamp=1d")
    ] = None,
) -> None:
    """Sign root version 1 with the key files; set per-role expiry."""
    config = RepoConfig(root_threshold, parse_expiry(expiry or []))
    root = init_repository(data, keys, config)
    typer.echo(
        f"repository initialised: root version {root.signed.version}, threshold {root_threshold}"
    )


@release_app.command()
@reports_errors
def build(
    kind: Annotated[str, typer.Option()],
    version: Annotated[str, typer.Option()],
    files: Annotated[list[Path], typer.Argument(help="Files, directories or a wheel to package.")],
    out: Annotated[Path, typer.Option()] = Path("."),
    site: Annotated[str | None, typer.Option()] = None,
    requires: Annotated[list[str] | None, typer.Option(help="e.g. base>=1.1")] = None,
    representatives: Annotated[int | None, typer.Option()] = None,
    endpoints: Annotated[int | None, typer.Option()] = None,
    trust_anchors: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A site release: PEM of the certificates the site's served chain leads to "
            "from this version on (appliances count the Jump Clients that do not trust them)",
        ),
    ] = None,
) -> None:
    """Make a release package (tar.gz with release.json) from files or a wheel."""
    counts = {"representatives": representatives, "endpoints": endpoints}
    anchors = anchor_fingerprints(trust_anchors.read_bytes()) if trust_anchors else ()
    try:
        info = PackageInfo(
            parse_kind(kind),
            parse_version(version),
            tuple(parse_requirement(r) for r in requires or []),
            site,
            {k: v for k, v in counts.items() if v is not None},
            anchors,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(str(build_package(info, files, out)))


@release_app.command()
@reports_errors
def publish(data: DataDir, keys: KeysDir, package: Path) -> None:
    """Sign a package into the repository of every site it is open to."""
    info = with_vendor(data, keys, lambda v: v.publish(package))
    typer.echo(f"published {info.spec} as {info.target_path}")


@release_app.command("add-customer")
@reports_errors
def add_customer(
    data: DataDir,
    keys: KeysDir,
    name: str,
    email: Annotated[str, typer.Option()],
    contract_end: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"])],
) -> None:
    """Add a customer (or update its e-mail and maintenance contract end)."""
    with_vendor(data, keys, lambda v: v.add_customer(name, email, contract_end.date()))
    typer.echo(f"customer {name} saved")


@release_app.command("add-site")
@reports_errors
def add_site(
    data: DataDir,
    keys: KeysDir,
    name: str,
    customer: Annotated[str, typer.Option()],
    wave: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Add a site of a customer in a rollout wave; creates its TUF repository."""
    with_vendor(data, keys, lambda v: v.add_site(name, customer, wave))
    typer.echo(f"site {name} saved in wave {wave}")


@release_app.command("set-wave")
@reports_errors
def set_wave(
    data: DataDir, keys: KeysDir, site: str, wave: Annotated[int, typer.Option(min=1)]
) -> None:
    """Move a site to another rollout wave."""
    with_vendor(data, keys, lambda v: v.set_wave(site, wave))
    typer.echo(f"site {site} is in wave {wave}")


@release_app.command("open-wave")
@reports_errors
def open_wave(
    data: DataDir,
    keys: KeysDir,
    release: Annotated[
        str, typer.Argument(help="kind:version[@site], e.g. site:1.1@support.example.com")
    ],
    wave: Annotated[int, typer.Option(min=1)],
    on: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    smtp_host: SmtpHost = None,
    smtp_port: SmtpPort = 25,
    mail_from: MailFrom = "updates@bastion.invalid",
) -> None:
    """Open a release to a wave from a date (default today); e-mail customers now ready."""
    day = on.date() if on else dt.datetime.now(dt.UTC).date()
    settings = UpdateServiceSettings(
        data_dir=data, keys_dir=keys, smtp_host=smtp_host, smtp_port=smtp_port, mail_from=mail_from
    )

    def run(vendor: Vendor) -> int:
        vendor.open_wave(release, wave, day)
        return len(asyncio.run(send_due_notices(vendor, settings)))

    sent = with_vendor(data, keys, run)
    typer.echo(f"{release} opens to wave {wave} on {day}; {sent} customer(s) e-mailed")


@release_app.command("rotate-root-key")
@reports_errors
def rotate_root_key(data: DataDir, keys: KeysDir, retire: Annotated[Path, typer.Option()]) -> None:
    """Replace one root key by a new one and sign the next root version."""
    version = with_vendor(data, keys, lambda v: v.rotate_root_key(retire))
    typer.echo(f"root version {version} signed; {retire.name} moved to retired/")


@release_app.command("enroll-appliance")
@reports_errors
def enroll_appliance(
    data: DataDir,
    keys: KeysDir,
    site: Annotated[str, typer.Option()],
    appliance_id: Annotated[str, typer.Option()],
    public_key: Annotated[
        str, typer.Option(help="The appliance's Ed25519 public key (base64url).")
    ],
) -> None:
    """Register an appliance's download-key public key."""
    with_vendor(data, keys, lambda v: v.enroll_appliance(site, appliance_id, public_key))
    typer.echo(f"appliance {appliance_id} enrolled for {site}")


@release_app.command()
@reports_errors
def refresh(data: DataDir, keys: KeysDir) -> None:
    """Apply wave dates that came and re-sign expiring metadata (for a timer)."""
    sites = with_vendor(data, keys, lambda v: v.sync_sites() + v.refresh_metadata())
    typer.echo(f"re-signed: {', '.join(sorted(set(sites))) or 'nothing'}")


@update_service_app.callback()
def update_service() -> None:
    """Run the vendor's update service."""


@update_service_app.command()
@reports_errors
def serve(
    data: DataDir,
    keys: KeysDir,
    listen: Annotated[str, typer.Option(help="ADDR:PORT")] = "127.0.0.1:8450",
    certfile: Annotated[Path | None, typer.Option()] = None,
    keyfile: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Serve the TUF repositories and the download-key page."""
    import uvicorn

    from bastion.update_service.app import create_app

    host, _, port = listen.rpartition(":")
    settings = UpdateServiceSettings(data_dir=data, keys_dir=keys)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host.strip("[]"),
        port=int(port),
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        log_level="warning",
    )


def main() -> None:
    app = typer.Typer(no_args_is_help=True)
    app.add_typer(update_service_app, name="update-service")
    app.add_typer(release_app, name="release")
    app()


if __name__ == "__main__":
    main()
