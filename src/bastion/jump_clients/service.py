"""Jump Clients: installers, registration, the site's list, edits, revocation, settings.

An installer is a file the site makes for one kind of client (mode, Jump Group, tag,
comments) and one site version: the one it runs, or a later one whose release it holds,
whose clients wait until the site runs it (R11). A client installed from it registers
its public key with the installer's token; with the key's proof, a client registered
already is replaced in place. The gateway (its own processes) holds the connections and
writes presence back; this module is what the pages, the API and the console do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from bastion.agents.identity import verify_registration
from bastion.jump_clients import builds, rules
from bastion.jump_clients.models import InstallerRow, JumpClientRow
from bastion.jump_clients.repository import (
    ClientFilter,
    InstallerRepository,
    JumpClientRepository,
)
from bastion.jump_clients.rules import FleetSettings, JumpClientError, Mode, Status
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork
from bastion.releases.versions import parse_version

INSTALLER_FORMAT = "bastion-jump-client-installer/1"
SETTINGS_KEY = "jump_clients.settings"
PUBLIC_KEY_BYTES = 32


@dataclass(frozen=True)
class JumpClientsSetup:
    """What installers carry and what the list compares against: this site's name, the
    addresses its clients reach, the anchors they trust, the version it runs."""

    site: str
    site_version: str
    gateway_address: str
    site_url: str
    anchors_pem: Callable[[], str]
    """The PEM of the anchors a client installed now must trust (the served chain's root)."""
    next_versions: Callable[[UnitOfWork], Mapping[str, Path]] = field(default=lambda uow: {})
    """Later site versions whose release this appliance holds, ready to install: version ->
    its package. Installers can be made for them ahead of the install (R11)."""


class SiteNotYetUpgradedError(ConflictError):
    """The installer is for a later site version than the site runs: the client waits."""


def _invalid(error: JumpClientError) -> InvalidInputError:
    return InvalidInputError(str(error))


# -- installers ----------------------------------------------------------------------


@dataclass(frozen=True)
class InstallerRequest:
    mode: str = Mode.ACTIVE.value
    kind: str = "jump_client"
    jump_group: str = ""
    tag: str = ""
    comments: str = ""
    valid_minutes: int = rules.DEFAULT_VALIDITY_MINUTES
    site_version: str = ""
    """The site version its clients run: "" for the one the site runs now, or a later one
    whose release the appliance holds."""


@dataclass(frozen=True)
class InstallerView:
    id: int
    mode: str
    kind: str
    jump_group: str
    tag: str
    comments: str
    site_version: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked: bool
    installed: int
    usable: bool
    """Not revoked, not expired, and made for the version the site runs now (R18)."""
    waiting: bool = False
    """Made for a later site version: its clients register once the site runs it (R11)."""


@dataclass(frozen=True)
class NewInstaller:
    installer: InstallerView
    file: bytes
    """The installer file: JSON; its token is shown only now and kept only as a hash."""

    @property
    def filename(self) -> str:
        return f"bastion-{self.installer.kind.replace('_', '-')}-{self.installer.id}.json"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _installer_view(row: InstallerRow, setup: JumpClientsSetup, now: datetime) -> InstallerView:
    alive = row.revoked_at is None and now < row.expires_at
    usable = alive and row.site_version == setup.site_version
    waiting = alive and rules.is_newer(row.site_version, setup.site_version)
    return InstallerView(
        row.id,
        row.mode,
        row.kind,
        row.jump_group,
        row.tag,
        row.comments,
        row.site_version,
        row.created_at,
        row.created_by,
        row.expires_at,
        row.revoked_at is not None,
        row.installed,
        usable,
        waiting,
    )


def make_installer(
    uow: UnitOfWork, setup: JumpClientsSetup, actor: Actor, request: InstallerRequest
) -> NewInstaller:
    try:
        mode = rules.parse_mode(request.mode)
        kind = rules.parse_kind(request.kind)
        valid = rules.check_validity(request.valid_minutes)
        group = rules.clean_label("Jump Group", request.jump_group)
        tag = rules.clean_label("tag", request.tag)
        comments = rules.clean_comments(request.comments)
    except JumpClientError as error:
        raise _invalid(error) from None
    version = _installer_version(uow, setup, request.site_version)
    token, now = secrets.token_urlsafe(32), utc_now()
    row = uow.repository(InstallerRepository).add(
        InstallerRow(
            token_hash=_digest(token),
            mode=mode.value,
            kind=kind,
            jump_group=group,
            tag=tag,
            comments=comments,
            site_version=version,
            created_at=now,
            created_by=actor.name,
            expires_at=now + valid,
            installed=0,
        )
    )
    audit.record(
        uow,
        actor,
        "jump_clients.installer.create",
        f"installer {row.id}",
        mode=mode,
        site_version=version,
    )
    return NewInstaller(_installer_view(row, setup, now), _installer_file(setup, row, token))


def installer_versions(uow: UnitOfWork, setup: JumpClientsSetup) -> list[str]:
    """The site versions installers can be made for: this one, then the later ones whose
    release the appliance holds."""
    return [setup.site_version, *sorted(setup.next_versions(uow), key=parse_version)]


def _installer_version(uow: UnitOfWork, setup: JumpClientsSetup, wanted: str) -> str:
    wanted = wanted.strip()
    if wanted in ("", setup.site_version):
        return setup.site_version
    offered = installer_versions(uow, setup)
    if wanted not in offered:
        raise ConflictError(
            f"The site cannot make installers for version {wanted!r}: it runs "
            f"{setup.site_version}, and holds no release of that version ready to install. "
            f"Download the site release on the Updates page first. Versions offered now: "
            f"{', '.join(offered)}."
        )
    return wanted


def _installer_file(setup: JumpClientsSetup, row: InstallerRow, token: str) -> bytes:
    body = {
        "format": INSTALLER_FORMAT,
        "site": setup.site,
        "site_url": setup.site_url,
        "gateway": setup.gateway_address,
        "anchors": setup.anchors_pem(),
        "token": token,
        "site_version": row.site_version,
        "mode": row.mode,
        "kind": row.kind,
        "jump_group": row.jump_group,
        "tag": row.tag,
        "comments": row.comments,
        "expires_at": row.expires_at.isoformat(timespec="seconds"),
    }
    return json.dumps(body, indent=2).encode()


def list_installers(uow: UnitOfWork, setup: JumpClientsSetup) -> list[InstallerView]:
    now = utc_now()
    return [_installer_view(r, setup, now) for r in uow.repository(InstallerRepository).all()]


def revoke_installer(
    uow: UnitOfWork, setup: JumpClientsSetup, actor: Actor, installer_id: int
) -> InstallerView:
    row = uow.repository(InstallerRepository).get(installer_id)
    if row is None:
        raise NotFoundError(f"There is no installer with id {installer_id}.")
    if row.revoked_at is None:
        row.revoked_at = utc_now()
        audit.record(uow, actor, "jump_clients.installer.revoke", f"installer {row.id}")
    return _installer_view(row, setup, utc_now())


# -- registration ----------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """What an endpoint says of itself when it registers."""

    machine: str
    """A digest of the machine's own id (never the id itself)."""
    hostname: str
    fqdn: str = ""
    os: str = ""
    console_user: str = ""


@dataclass(frozen=True)
class Registration:
    token: str
    claims: rules.InstallerClaims
    public_key: bytes
    endpoint: Endpoint
    agent_version: str
    anchors: tuple[str, ...] = ()
    wake_port: int | None = None
    proof: bytes = b""
    """The endpoint key's signature of the site and the token (`agents.identity`): what
    lets an installation replace the one already registered with this key."""


def register(
    uow: UnitOfWork, setup: JumpClientsSetup, registration: Registration, source: str
) -> JumpClientView:
    """A client installed from an installer: its public key becomes its identity.

    Refused (and audited) when the installer is unknown, revoked, expired, altered, for
    another site or for an earlier site version; nothing is registered then. An installer
    for a later site version is not refused: the client is told to wait (R11).

    A key registered already is an installer run over an installation (R11): with the
    key's proof, the client keeps its record, and takes the new installer's mode, Jump
    Group, tag and comments.
    """
    installer = uow.repository(InstallerRepository).by_token_hash(_digest(registration.token))
    issued = None if installer is None else _issued(installer, setup.site)
    refusal = rules.installer_refusal(
        issued, registration.claims, setup.site, setup.site_version, utc_now()
    )
    if refusal is not None:
        audit.record(uow, audit_actor(source), "jump_clients.register.refused", "", reason=refusal)
        raise AuthenticationError(refusal, recorded=True)
    waiting = rules.not_yet(registration.claims, setup.site_version)
    if waiting is not None:
        raise SiteNotYetUpgradedError(waiting)
    assert installer is not None
    row, replaced = _registered(uow, installer, registration, setup.site, source)
    installer.installed += 1
    audit.record(
        uow,
        audit_actor(source),
        "jump_clients.register",
        row.name,
        client_id=row.client_id,
        replaced=replaced,
    )
    return _view(row, setup, settings(uow), utc_now())


def audit_actor(source: str) -> Actor:
    return Actor(None, source)


def _issued(row: InstallerRow, site: str) -> rules.IssuedInstaller:
    claims = rules.InstallerClaims(
        site, row.site_version, row.mode, row.jump_group, row.tag, row.kind
    )
    return rules.IssuedInstaller(claims, row.expires_at, row.revoked_at is not None)


def _registered(
    uow: UnitOfWork, installer: InstallerRow, registration: Registration, site: str, source: str
) -> tuple[JumpClientRow, bool]:
    """The client's record, new or replaced in place, and whether it was replaced."""
    key = registration.public_key
    if len(key) != PUBLIC_KEY_BYTES:
        raise InvalidInputError(
            "The public key must be 32 bytes of Ed25519; nothing was registered."
        )
    existing = uow.repository(JumpClientRepository).by_client_id(client_id_for(key))
    if existing is None:
        return _new_client(uow, installer, registration, source), False
    if not verify_registration(key, site, registration.token, registration.proof):
        raise ConflictError(
            "This endpoint key is registered already, and the installation did not prove it "
            "holds the key, so it cannot replace that client. Install with this site's "
            "version of the Jump Client, or remove the client's state directory to install "
            "it as a new client."
        )
    if existing.revoked_at is not None or existing.uninstall_requested_at is not None:
        gone = "revoked" if existing.revoked_at is not None else "deleted"
        raise ConflictError(
            f"The Jump Client registered with this endpoint key was {gone} by an "
            "administrator; it cannot be installed again with the same key. Remove the "
            "client's state directory (`bastion jump-client uninstall`) and install again."
        )
    _replace(existing, installer, registration, source)
    return existing, True


def _replace(
    row: JumpClientRow, installer: InstallerRow, registration: Registration, source: str
) -> None:
    """A new installation over this client's: its record stays (name, history); what the
    installer chose and what the endpoint says now are taken."""
    endpoint = registration.endpoint
    row.mode, row.kind, row.installer_id = installer.mode, installer.kind, installer.id
    row.jump_group, row.tag, row.comments = installer.jump_group, installer.tag, installer.comments
    row.endpoint = _endpoint_digest(endpoint)
    row.hostname, row.fqdn = endpoint.hostname[:255], endpoint.fqdn[:255]
    row.os, row.console_user = endpoint.os[:255], endpoint.console_user[:255]
    row.version, row.revision = registration.agent_version[:64], ""
    row.anchors = json.dumps(list(registration.anchors))
    row.address, row.wake_port = source[:64], registration.wake_port
    row.installed_at = row.last_check_in_at = utc_now()
    row.upgrade_state, row.upgrade_version, row.upgrade_detail = "", "", ""


def _new_client(
    uow: UnitOfWork, installer: InstallerRow, registration: Registration, source: str
) -> JumpClientRow:
    key = registration.public_key
    client_id = client_id_for(key)
    clients = uow.repository(JumpClientRepository)
    endpoint, now = registration.endpoint, utc_now()
    return clients.add(
        JumpClientRow(
            client_id=client_id,
            public_key=key,
            name=rules.clean_label("name", endpoint.hostname, rules.MAX_NAME) or client_id,
            mode=installer.mode,
            kind=installer.kind,
            jump_group=installer.jump_group,
            tag=installer.tag,
            comments=installer.comments,
            installer_id=installer.id,
            endpoint=_endpoint_digest(endpoint),
            hostname=endpoint.hostname[:255],
            fqdn=endpoint.fqdn[:255],
            os=endpoint.os[:255],
            console_user=endpoint.console_user[:255],
            version=registration.agent_version[:64],
            revision="",
            anchors=json.dumps(list(registration.anchors)),
            statistics="{}",
            address=source[:64],
            wake_port=registration.wake_port,
            online=False,
            installed_at=now,
            last_check_in_at=now,
        )
    )


def client_id_for(public_key: bytes) -> str:
    """The client id of the endpoint holding `public_key` (as the agent derives it)."""
    digest = hashlib.sha256(b"bastion client id\0" + public_key).digest()
    return "jc_" + base64.b32encode(digest[:15]).decode("ascii").lower()


def _endpoint_digest(endpoint: Endpoint) -> str:
    return hashlib.sha256(f"{endpoint.machine}\0{endpoint.hostname}".encode()).hexdigest()


# -- the list ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JumpClientView:
    id: int
    client_id: str
    name: str
    mode: str
    kind: str
    jump_group: str
    tag: str
    comments: str
    hostname: str
    fqdn: str
    os: str
    console_user: str
    version: str
    revision: str
    status: Status
    online: bool
    installed_at: datetime
    last_seen_at: datetime | None
    last_check_in_at: datetime | None
    statistics: dict[str, object]
    address: str


def _view(
    row: JumpClientRow, setup: JumpClientsSetup, fleet: FleetSettings, now: datetime
) -> JumpClientView:
    state = rules.ClientState(
        online=row.online,
        last_seen_at=row.last_seen_at,
        installed_at=row.installed_at,
        revoked=row.revoked_at is not None,
        uninstall_requested=row.uninstall_requested_at is not None,
        version=row.version,
        upgrade_state=row.upgrade_state if row.upgrade_version == setup.site_version else "",
    )
    lost_after = timedelta(days=fleet.lost_after_days)
    return JumpClientView(
        row.id,
        row.client_id,
        row.name,
        row.mode,
        row.kind,
        row.jump_group,
        row.tag,
        row.comments,
        row.hostname,
        row.fqdn,
        row.os,
        row.console_user,
        row.version,
        row.revision,
        rules.status_of(state, setup.site_version, lost_after, now),
        row.online,
        row.installed_at,
        row.last_seen_at,
        row.last_check_in_at,
        json.loads(row.statistics or "{}"),
        row.address,
    )


@dataclass(frozen=True)
class Page:
    clients: list[JumpClientView]
    total: int


def list_clients(
    uow: UnitOfWork, setup: JumpClientsSetup, wanted: ClientFilter, limit: int, offset: int
) -> Page:
    """One page of the list, filtered; status is worked out here, so filtering by it
    reads the filtered rows and pages after."""
    fleet, now = settings(uow), utc_now()
    repo = uow.repository(JumpClientRepository)
    if wanted.status is None:
        rows, total = repo.page(wanted, limit, offset), repo.count(wanted)
        return Page([_view(r, setup, fleet, now) for r in rows], total)
    every = [_view(r, setup, fleet, now) for r in repo.page(wanted, None, 0)]
    matching = [v for v in every if v.status.value == wanted.status]
    return Page(matching[offset : offset + limit], len(matching))


def clients_in_groups(
    uow: UnitOfWork, setup: JumpClientsSetup, groups: set[str] | None
) -> list[JumpClientView]:
    """Every client (`groups` None) or those in one of `groups`, by name: what a
    representative's access console lists."""
    fleet, now = settings(uow), utc_now()
    rows = uow.repository(JumpClientRepository).page(ClientFilter(), None, 0)
    wanted = [r for r in rows if groups is None or r.jump_group in groups]
    return [_view(r, setup, fleet, now) for r in wanted]


def get_client(uow: UnitOfWork, setup: JumpClientsSetup, row_id: int) -> JumpClientView:
    return _view(_row(uow, row_id), setup, settings(uow), utc_now())


def row_id_of(uow: UnitOfWork, client_id: str) -> int | None:
    """The record id of the Jump Client `client_id`, or None if the site has none."""
    row = uow.repository(JumpClientRepository).by_client_id(client_id)
    return None if row is None else row.id


def _row(uow: UnitOfWork, row_id: int) -> JumpClientRow:
    row = uow.repository(JumpClientRepository).get(row_id)
    if row is None:
        raise NotFoundError(f"There is no Jump Client with id {row_id}; reload the list.")
    return row


@dataclass(frozen=True)
class ClientEdit:
    name: str | None = None
    jump_group: str | None = None
    tag: str | None = None
    comments: str | None = None


def edit_client(
    uow: UnitOfWork, setup: JumpClientsSetup, actor: Actor, row_id: int, edit: ClientEdit
) -> JumpClientView:
    """Name, Jump Group, tag and comments; a client waiting for its upgrade can be edited."""
    row = _row(uow, row_id)
    changes: dict[str, str] = {}
    try:
        for field, limit in (("name", rules.MAX_NAME), ("jump_group", 100), ("tag", 100)):
            value = getattr(edit, field)
            if value is not None:
                changes[field] = rules.clean_label(field.replace("_", " "), value, limit)
        if edit.comments is not None:
            changes["comments"] = rules.clean_comments(edit.comments)
    except JumpClientError as error:
        raise _invalid(error) from None
    if "name" in changes and not changes["name"]:
        raise InvalidInputError("Give the Jump Client a name.")
    for field, value in changes.items():
        setattr(row, field, value)
    audit.record(uow, actor, "jump_clients.edit", row.name, **changes)
    return _view(row, setup, settings(uow), utc_now())


def revoke_client(
    uow: UnitOfWork, setup: JumpClientsSetup, actor: Actor, row_id: int
) -> JumpClientView:
    """The client is refused from now on; the caller has the gateway drop it at once."""
    row = _row(uow, row_id)
    if row.revoked_at is None:
        row.revoked_at = utc_now()
        audit.record(uow, actor, "jump_clients.revoke", row.name, client_id=row.client_id)
    return _view(row, setup, settings(uow), utc_now())


@dataclass(frozen=True)
class WakeTarget:
    client_id: str
    address: str
    port: int


def wake_target(uow: UnitOfWork, setup: JumpClientsSetup, actor: Actor, row_id: int) -> WakeTarget:
    """Where a passive client listens for wakes; refused for one that cannot be woken."""
    row = _row(uow, row_id)
    if row.mode != Mode.PASSIVE.value:
        raise ConflictError(f"{row.name} is an active Jump Client: it holds a connection already.")
    if row.revoked_at is not None:
        raise ConflictError(f"{row.name} was revoked; it is refused when it checks in.")
    if not row.wake_port or not row.address:
        raise ConflictError(
            f"{row.name} has not told the site where it listens for wakes yet: it does at its "
            "next check-in (at start, when asked on the endpoint, or within a day)."
        )
    audit.record(uow, actor, "jump_clients.wake", row.name, client_id=row.client_id)
    return WakeTarget(row.client_id, row.address, row.wake_port)


class Waker(Protocol):
    async def wake(self, client_id: str, address: str, port: int) -> str: ...


async def wake(waker: Waker | None, target: WakeTarget) -> str:
    if waker is None:
        raise UnavailableError("This appliance runs no Jump Client gateway; wakes are sent by it.")
    try:
        return await waker.wake(target.client_id, target.address, target.port)
    except (OSError, TimeoutError) as error:
        raise UnavailableError(
            f"The client did not answer on {target.address}:{target.port} ({error}); a firewall "
            "may block the wake port, or the endpoint is off. It checks in within a day anyway."
        ) from None


def delete_client(
    uow: UnitOfWork, setup: JumpClientsSetup, actor: Actor, row_id: int
) -> JumpClientView:
    """The client uninstalls itself at its next contact; then its record goes."""
    row = _row(uow, row_id)
    if row.uninstall_requested_at is None:
        row.uninstall_requested_at = utc_now()
        audit.record(uow, actor, "jump_clients.delete", row.name, client_id=row.client_id)
    return _view(row, setup, settings(uow), utc_now())


def duplicates(uow: UnitOfWork, setup: JumpClientsSetup) -> list[list[JumpClientView]]:
    """Clients installed more than once on one machine, grouped by machine."""
    fleet, now = settings(uow), utc_now()
    groups = uow.repository(JumpClientRepository).sharing_an_endpoint()
    return [[_view(r, setup, fleet, now) for r in group] for group in groups]


# -- settings -------------------------------------------------------------------------------


def settings(uow: UnitOfWork) -> FleetSettings:
    stored = uow.settings.get(SETTINGS_KEY) or {}
    known = {k: int(v) for k, v in stored.items() if k in FleetSettings.__dataclass_fields__}
    return FleetSettings(**known)


def set_settings(uow: UnitOfWork, actor: Actor, chosen: FleetSettings) -> FleetSettings:
    try:
        rules.check_settings(chosen)
    except JumpClientError as error:
        raise _invalid(error) from None
    uow.settings.set(SETTINGS_KEY, asdict(chosen))
    audit.record(uow, actor, "jump_clients.settings", "Jump Clients", **asdict(chosen))
    return chosen


# -- the site's build --------------------------------------------------------------------


def site_build(data_dir: Path) -> builds.Build | None:
    """The site's own build (its `bastion` wheel), which Jump Clients and access consoles
    fetch to run the site's version; None while the appliance runs the code it was
    installed with."""
    return builds.current_build(data_dir)


def installer_build(
    uow: UnitOfWork, setup: JumpClientsSetup, data_dir: Path, version: str
) -> builds.Build:
    """The build (the `bastion` wheel) that clients and consoles of `version` run: this
    site's, or that of a later release the appliance holds, to install on endpoints with
    that version's installers before the site install (R11)."""
    if version == setup.site_version:
        found = builds.current_build(data_dir)
        if found is None:
            raise NotFoundError(
                f"This appliance runs the code it was installed with and holds no build of "
                f"{version}; install the `bastion` package of that version on endpoints."
            )
        return found
    package = setup.next_versions(uow).get(version)
    if package is None:
        raise NotFoundError(
            f"The appliance holds no site release {version!r} ready to install; versions with "
            f"a build here: {', '.join(installer_versions(uow, setup))}."
        )
    try:
        return builds.build_of(data_dir, version, package)
    except builds.BuildError as error:
        raise UnavailableError(str(error)) from None
