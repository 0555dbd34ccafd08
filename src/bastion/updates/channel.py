"""The update channel: whom this appliance asks for releases, and what it trusts.

Three appliance settings, kept in the database and set under /appliance > Updates, with
`/api/v1/updates/settings` or `bastion appliance updates settings`. Each one not set
falls back to its environment setting, read when it is used:

- the update service URL (BASTION_UPDATE_SERVICE_URL; empty: Manual Installation only);
- the CA its TLS certificate must chain to (BASTION_UPDATE_SERVICE_CA_FILE; none: the
  operating system's trust store plus BASTION_TRUST_ANCHORS_FILE, see `trust`);
- the vendor's trusted root, root.json (BASTION_UPDATE_TRUSTED_ROOT; none: the root
  shipped in the site build).

The site name (BASTION_UPDATE_SITE, else the hostname) comes with the site build and is
not an appliance setting.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import TypeVar

from bastion.platform import audit, identity
from bastion.platform.errors import InvalidInputError, UnavailableError
from bastion.platform.principals import Actor
from bastion.platform.settings import ApplianceSettings
from bastion.platform.unit_of_work import UnitOfWork
from bastion.updates import client as uc
from bastion.updates import rules, trust
from bastion.updates.appliance_key import ensure_appliance_key, public_key_of
from bastion.updates.errors import MANUAL_INSTALLATION, SETTINGS, UpdatesNotConfiguredError
from bastion.updates.rules import ChannelSettingError, Source
from bastion.updates.trusted_store import shipped_root

URL_SETTING = "updates.service_url"
CA_SETTING = "updates.service_ca"
ROOT_SETTING = "updates.trusted_root"
URL_VARIABLE = "BASTION_UPDATE_SERVICE_URL"
CA_VARIABLE = "BASTION_UPDATE_SERVICE_CA_FILE"
ROOT_VARIABLE = "BASTION_UPDATE_TRUSTED_ROOT"


@dataclass(frozen=True)
class UpdateSetup:
    """Where this appliance keeps update state, its site, and the channel's defaults."""

    data_dir: Path
    site: str
    default_url: str = ""
    default_ca_file: Path | None = None
    default_root_file: Path | None = None
    trust_anchors_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: ApplianceSettings) -> UpdateSetup:
        return cls(
            settings.data_dir,
            settings.update_site or settings.hostname,
            settings.update_service_url.strip().rstrip("/"),
            settings.update_service_ca_file,
            settings.update_trusted_root,
            settings.trust_anchors_file,
        )

    @property
    def key_file(self) -> Path:
        return self.data_dir / "state" / "update-key"

    @property
    def packages_dir(self) -> Path:
        return self.data_dir / "blobs" / "sha256"

    @property
    def tuf_dir(self) -> Path:
        return self.data_dir / "tuf"


@dataclass(frozen=True)
class Channel:
    """The update channel in effect, each part with where it comes from."""

    site: str
    service_url: str
    url_source: Source
    service_ca: bytes | None
    ca_source: Source
    trusted_root: bytes | None
    root_source: Source
    trust_anchors_file: Path | None = None
    ca_problem: str | None = None
    """Why the CA in effect cannot be used (a bad environment file): online steps refuse."""
    root_problem: str | None = None
    """Why the trusted root in effect cannot be used: every update step refuses."""
    ca_certificates: tuple[trust.CaCertificate, ...] = ()
    root: trust.RootSummary | None = None
    notes: tuple[str, str, str] = ("", "", "")
    """Where the URL, the CA and the root come from, in words."""

    @property
    def problems(self) -> list[str]:
        return [p for p in (self.ca_problem, self.root_problem) if p]

    def tls(self) -> ssl.SSLContext:
        return trust.service_tls(self.service_ca, self.trust_anchors_file)


Found = tuple[bytes | None, Source, str | None]
"""A setting's value in effect, where it comes from, and why it cannot be used."""


def _stored(uow: UnitOfWork, key: str) -> str | None:
    value = uow.settings.get(key)
    return value if isinstance(value, str) and value else None


def _from_file(path: Path, what: str, variable: str) -> Found:
    try:
        return trust.read_file(path, what, variable), Source.ENVIRONMENT, None
    except trust.TrustError as error:
        return None, Source.ENVIRONMENT, str(error)


def _url(uow: UnitOfWork, setup: UpdateSetup) -> tuple[str, Source]:
    stored = _stored(uow, URL_SETTING)
    if stored is not None:
        return stored, Source.APPLIANCE
    return setup.default_url, Source.ENVIRONMENT if setup.default_url else Source.NONE


def _ca(uow: UnitOfWork, setup: UpdateSetup) -> Found:
    stored = _stored(uow, CA_SETTING)
    if stored is not None:
        return stored.encode(), Source.APPLIANCE, None
    if setup.default_ca_file is not None:
        return _from_file(setup.default_ca_file, "update service CA file", CA_VARIABLE)
    return None, Source.SYSTEM, None


def _root(uow: UnitOfWork, setup: UpdateSetup) -> Found:
    stored = _stored(uow, ROOT_SETTING)
    if stored is not None:
        return stored.encode(), Source.APPLIANCE, None
    if setup.default_root_file is not None:
        return _from_file(setup.default_root_file, "update trusted root", ROOT_VARIABLE)
    shipped = shipped_root()
    return shipped, Source.SITE_BUILD if shipped else Source.NONE, None


def in_effect(uow: UnitOfWork, setup: UpdateSetup) -> Channel:
    """The channel in effect: each setting stored on this appliance, else its default."""
    url, url_source = _url(uow, setup)
    ca, ca_source, ca_problem = _ca(uow, setup)
    root, root_source, root_problem = _root(uow, setup)
    certificates, ca, ca_problem = _read(ca, ca_source, ca_problem, CA_VARIABLE, _certificates)
    summary, root, root_problem = _read(
        root, root_source, root_problem, ROOT_VARIABLE, trust.root_summary
    )
    notes = (
        rules.source_words(url_source, URL_VARIABLE),
        rules.source_words(
            ca_source,
            CA_VARIABLE,
            setup.trust_anchors_file if ca_source is Source.SYSTEM else setup.default_ca_file,
        ),
        rules.source_words(root_source, ROOT_VARIABLE, setup.default_root_file),
    )
    return Channel(
        setup.site,
        *(url, url_source, ca, ca_source, root, root_source),
        setup.trust_anchors_file,
        ca_problem,
        root_problem,
        certificates or (),
        summary,
        notes,
    )


T = TypeVar("T")


def _certificates(pem: bytes) -> tuple[trust.CaCertificate, ...]:
    return tuple(trust.ca_certificates(pem))


def _read(
    data: bytes | None,
    source: Source,
    problem: str | None,
    variable: str,
    parse: Callable[[bytes], T],
) -> tuple[T | None, bytes | None, str | None]:
    """What `data` holds, as `parse` reads it; or None and why it cannot be used."""
    if data is None:
        return None, None, problem
    try:
        return parse(data), data, problem
    except trust.TrustError as error:
        return None, None, f"{error} ({_where(source, variable)})"


def _where(source: Source, variable: str) -> str:
    return f"from {variable}" if source is Source.ENVIRONMENT else "as set on this appliance"


# Changing the channel.


@dataclass(frozen=True)
class ChannelChange:
    """What an administrator changes. None leaves a setting as it is; an empty text
    returns it to its default (the environment setting)."""

    service_url: str | None = None
    service_ca: str | None = None
    trusted_root: str | None = None


def configure(uow: UnitOfWork, setup: UpdateSetup, actor: Actor, change: ChannelChange) -> Channel:
    """Check every value given, then store them together; nothing is kept if one is wrong."""
    try:
        checked = {
            URL_SETTING: _checked(change.service_url, rules.service_url),
            CA_SETTING: _checked(change.service_ca, _checked_ca),
            ROOT_SETTING: _checked(change.trusted_root, _checked_root),
        }
    except (ChannelSettingError, trust.TrustError) as error:
        raise InvalidInputError(f"{error} Nothing was changed.") from None
    changed = {key: value for key, value in checked.items() if value is not None}
    for key, value in changed.items():
        uow.settings.set(key, value)
    found = in_effect(uow, setup)
    if changed:
        audit.record(uow, actor, "updates.settings", setup.site, **_audited(found, changed))
    return found


def _checked(value: str | None, check: Callable[[str], str]) -> str | None:
    """None: unchanged; empty: back to the default (stored as ""); else the checked value."""
    if value is None:
        return None
    return check(value) if value.strip() else ""


def _checked_ca(text: str) -> str:
    data = rules.within(text.strip().encode(), rules.MAX_CA_BYTES, "update service CA")
    trust.ca_certificates(data)
    return data.decode("ascii") + "\n"


def _checked_root(text: str) -> str:
    data = rules.within(text.strip().encode(), rules.MAX_ROOT_BYTES, "trusted root")
    trust.root_summary(data)
    return data.decode()


def _audited(found: Channel, changed: dict[str, str]) -> dict[str, object]:
    details: dict[str, object] = {}
    if URL_SETTING in changed:
        details["service_url"] = found.service_url or "(none)"
    if CA_SETTING in changed:
        details["service_ca"] = [c.sha256 for c in found.ca_certificates] or "(system)"
    if ROOT_SETTING in changed:
        details["trusted_root"] = found.root.sha256 if found.root else "(none)"
    return {**details, "defaults": sorted(k for k, v in changed.items() if not v)}


# Using the channel.


def appliance_id(setup: UpdateSetup) -> str:
    try:
        return str((identity.read(setup.data_dir / "state") or {})["appliance_id"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UnavailableError(
            f"{setup.data_dir} holds no appliance identity yet: start the appliance once "
            "with `bastion appliance serve`."
        ) from None


def enrollment(setup: UpdateSetup) -> dict[str, str]:
    """What the vendor needs to enrol this appliance (`bastion release enroll-appliance`)."""
    key = ensure_appliance_key(setup.key_file)
    return {
        "site": setup.site,
        "appliance_id": appliance_id(setup),
        "public_key": public_key_of(key),
    }


NO_UPDATE_SERVICE = (
    f"No update service is configured: set its URL under {SETTINGS} (or {URL_VARIABLE})."
)
NO_TRUSTED_ROOT = (
    "This site build carries no update trusted root: set the root.json the vendor "
    f"shipped with this site under {SETTINGS} (or {ROOT_VARIABLE})."
)


@dataclass(frozen=True)
class Readiness:
    """What the channel in effect allows, and in words why not where it does not."""

    no_update_service: str | None
    no_trusted_root: str | None

    @property
    def offline_refused(self) -> str | None:
        """Why bundles cannot be verified and download keys not made here, or None."""
        return self.no_trusted_root

    def shown_with(self, words: Callable[[str], str]) -> Readiness:
        """The same reasons, each as `words` puts it (e.g. as the Updates page says it)."""
        return Readiness(*(None if r is None else words(r) for r in astuple(self)))


def readiness(found: Channel) -> Readiness:
    """Checked before offering the buttons, so that a button that cannot work says why."""
    no_root = found.root_problem or (NO_TRUSTED_ROOT if found.trusted_root is None else None)
    return Readiness(None if found.service_url else NO_UPDATE_SERVICE, no_root)


def client(uow: UnitOfWork, setup: UpdateSetup, online: bool = True) -> uc.UpdateClient:
    """The TUF client over the channel in effect; online, it needs an update service."""
    found = in_effect(uow, setup)
    ready = readiness(found)
    if online and ready.no_update_service:
        raise UpdatesNotConfiguredError(
            f"{ready.no_update_service} Until then, use {MANUAL_INSTALLATION}"
        )
    if online and found.ca_problem:
        raise UpdatesNotConfiguredError(found.ca_problem)
    if ready.no_trusted_root or found.trusted_root is None:
        raise UpdatesNotConfiguredError(ready.no_trusted_root or NO_TRUSTED_ROOT)
    return uc.UpdateClient(
        setup.data_dir,
        setup.site,
        appliance_id(setup),
        found.trusted_root,
        found.service_url,
        ensure_appliance_key(setup.key_file),
        tls=found.tls() if online else None,
    )
