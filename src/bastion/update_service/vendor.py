"""Vendor use cases: repository keys, customers, sites, releases, waves, notices.

``Vendor`` owns the data directory (see tuf_repo.py for its layout, plus
``vendor.db`` and ``packages/<sha256>``). Every change to what a site may
install ends in ``sync_sites``, which re-signs the targets of each site whose
visible set changed.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, Root, TargetFile  # type: ignore[attr-defined]

from bastion.releases.download_key import DownloadKeyFormatError, parse_public_key
from bastion.releases.packages import PackageError, PackageInfo, parse_spec, read_package
from bastion.releases.versions import parse_version
from bastion.update_service import rollout
from bastion.update_service.errors import (
    InvalidRecordError,
    RepositoryStateError,
    UnknownRecordError,
)
from bastion.update_service.keys import ONLINE_ROLES, KeyRing, load_signer, write_new_key
from bastion.update_service.store import (
    ApplianceRow,
    CustomerRow,
    NoticeRow,
    ReleaseRow,
    SiteRow,
    WaveOpeningRow,
    open_database,
)
from bastion.update_service.tuf_repo import (
    RepoConfig,
    RootHistory,
    SiteRepository,
    role_thresholds,
    utcnow,
)


@dataclass(frozen=True)
class Notice:
    """An e-mail to send: these releases are ready for this customer."""

    customer: str
    email: str
    releases: tuple[str, ...]


def init_repository(data_dir: Path, keys_dir: Path, config: RepoConfig) -> Metadata[Root]:
    """Create root version 1 from the key files; refuse if a repository exists."""
    history = RootHistory(data_dir)
    if history.files():
        raise RepositoryStateError(f"{data_dir} already holds a repository; use rotate-root-key")
    config.save(data_dir)
    return history.create(KeyRing.from_files(keys_dir), config, utcnow())


class Vendor:
    def __init__(self, data_dir: Path, keys_dir: Path) -> None:
        self.data_dir = data_dir
        self.keys_dir = keys_dir
        self.config = RepoConfig.load(data_dir)
        self.history = RootHistory(data_dir)
        self.sessions = open_database(data_dir)
        self.packages_dir = data_dir / "packages"

    def close(self) -> None:
        self.sessions.kw["bind"].dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def keyring(self, roles: tuple[str, ...] = ONLINE_ROLES) -> KeyRing:
        """Signers for ``roles``; MissingKeyError names any role short of keys."""
        root = self.history.latest().signed
        ring = KeyRing.for_root(self.keys_dir, root)
        ring.require(roles, role_thresholds(root))
        return ring

    def site_repository(self, site: str) -> SiteRepository:
        return SiteRepository(self.data_dir, site, self.config)

    # -- records -------------------------------------------------------------

    def add_customer(self, name: str, email: str, contract_end: dt.date) -> None:
        with self.session() as s:
            s.merge(CustomerRow(name=name, email=email, contract_end=contract_end))
        self.sync_sites()

    def add_site(self, name: str, customer: str, wave: int) -> None:
        with self.session() as s:
            _get(s, CustomerRow, customer, "customer")
            s.merge(SiteRow(name=name, customer=customer, wave=wave))
        self.sync_sites()

    def set_wave(self, site: str, wave: int) -> None:
        with self.session() as s:
            _get(s, SiteRow, site, "site").wave = wave
        self.sync_sites()

    def enroll_appliance(self, site: str, appliance_id: str, public_key: str) -> None:
        try:
            parse_public_key(public_key)
        except DownloadKeyFormatError as exc:
            raise InvalidRecordError(f"cannot enrol appliance {appliance_id!r}: {exc}") from exc
        with self.session() as s:
            _get(s, SiteRow, site, "site")
            row = ApplianceRow(
                appliance_id=appliance_id, site=site, public_key=public_key, enrolled_at=utcnow()
            )
            s.merge(row)

    # -- releases ------------------------------------------------------------

    def publish(self, package: Path) -> PackageInfo:
        """Store the package, record the release and re-sign every site it is open to."""
        info = read_package(package)
        digest = _store_blob(package, self.packages_dir)
        with self.session() as s:
            if info.site is not None:
                _get(s, SiteRow, info.site, "site")
            if s.scalar(select(ReleaseRow).where(ReleaseRow.spec == info.spec)):
                raise PackageError(f"release {info.spec} is already published")
            s.add(_release_row(info, digest, package.stat().st_size))
        self.sync_sites()
        return info

    def open_wave(self, spec: str, wave: int, on: dt.date) -> None:
        """Open a release to ``wave`` (and every lower wave) from date ``on``."""
        kind, version, site = parse_spec(spec)
        with self.session() as s:
            query = select(ReleaseRow).where(ReleaseRow.kind == kind.value, ReleaseRow.site == site)
            found = [r for r in s.scalars(query) if parse_version(r.version) == version]
            if not found:
                raise UnknownRecordError(f"no published release {spec}: publish it first")
            release = found[0]
            s.merge(WaveOpeningRow(release_id=release.id, wave=wave, opens_on=on))
        self.sync_sites()

    # -- visibility ------------------------------------------------------------

    def visible_releases(self, s: Session, site: str, today: dt.date) -> list[ReleaseRow]:
        row = _get(s, SiteRow, site, "site")
        customer = _customer(_get(s, CustomerRow, row.customer, "customer"))
        placement = rollout.SitePlacement(row.name, row.customer, row.wave)
        openings = _openings(s)
        return [
            r
            for r in s.scalars(select(ReleaseRow).order_by(ReleaseRow.id))
            if rollout.is_visible(r.site, openings.get(r.id, {}), placement, customer, today)
        ]

    @contextmanager
    def signing(self) -> Iterator[None]:
        """One signer at a time (CLI and the serving process share the repository)."""
        with (self.data_dir / ".signing.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def sync_sites(self, today: dt.date | None = None) -> list[str]:
        """Re-sign each site whose visible releases changed; return those sites."""
        with self.signing():
            return self._sync_sites(today or utcnow().date())

    def _sync_sites(self, day: dt.date) -> list[str]:
        with self.session() as s:
            wanted = {
                site: self.visible_releases(s, site, day)
                for site in s.scalars(select(SiteRow.name))
            }
        changed = [site for site, rows in wanted.items() if self._sync_site(site, rows)]
        return changed

    def _sync_site(self, site: str, rows: list[ReleaseRow]) -> bool:
        repo = self.site_repository(site)
        repo.sync_roots(self.history)
        targets = {r.target_path: target_file_of(r) for r in rows}
        if repo.initialised and repo.current_targets() == targets:
            return False
        blobs = {r.target_path: self.packages_dir / r.sha256 for r in rows}
        repo.publish(targets, blobs, self.keyring())
        return True

    def refresh_metadata(self) -> list[str]:
        """Re-sign expiring metadata of every site; return the sites touched."""
        with self.session() as s:
            sites = list(s.scalars(select(SiteRow.name)))
        ring = self.keyring()
        with self.signing():
            return [site for site in sites if self.site_repository(site).refresh(ring)]

    def rotate_root_key(self, retire: Path) -> int:
        """Replace root key file ``retire`` by a new one; sign root n+1; copy it to every site."""
        old = self.keyring(("root",))
        retired = load_signer(retire)
        if retired.public_key.keyid not in self.history.latest().signed.roles["root"].keyids:
            raise RepositoryStateError(f"{retire} is not one of the current root keys")
        index = 1 + max(int(p.stem.split("-")[1]) for p in self.keys_dir.glob("root-*.pem"))
        new = write_new_key(self.keys_dir / f"root-{index}.pem")
        md = self.history.rotate(old, [new], {retired.public_key.keyid}, self.config)
        (self.keys_dir / "retired").mkdir(exist_ok=True)
        retire.rename(self.keys_dir / "retired" / retire.name)
        self.sync_sites()
        for site in self._site_names():
            self.site_repository(site).sync_roots(self.history)
        return md.signed.version

    def _site_names(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(SiteRow.name)))

    # -- notices ---------------------------------------------------------------

    def notices_due(self, today: dt.date | None = None) -> list[Notice]:
        day = today or utcnow().date()
        with self.session() as s:
            customers = {c.name: _customer(c) for c in s.scalars(select(CustomerRow))}
            placements = [
                rollout.SitePlacement(r.name, r.customer, r.wave)
                for r in s.scalars(select(SiteRow))
            ]
            openings = _openings(s)
            schedules = [
                rollout.Schedule(r.spec, r.site, openings.get(r.id, {}))
                for r in s.scalars(select(ReleaseRow))
            ]
            told = {
                (spec, c)
                for spec, c in s.execute(
                    select(ReleaseRow.spec, NoticeRow.customer).join(NoticeRow)
                )
            }
        due = rollout.notices_due(schedules, placements, customers, told, day)
        return [
            Notice(name, customers[name].email, tuple(specs)) for name, specs in sorted(due.items())
        ]

    def record_notice(self, notice: Notice) -> None:
        with self.session() as s:
            for spec in notice.releases:
                release = s.scalar(select(ReleaseRow).where(ReleaseRow.spec == spec))
                if release is not None:
                    s.merge(
                        NoticeRow(release_id=release.id, customer=notice.customer, sent_at=utcnow())
                    )


def _get(s: Session, model: type, key: str, what: str):  # type: ignore[no-untyped-def]
    row = s.get(model, key)
    if row is None:
        raise UnknownRecordError(f"no {what} named {key!r}: add it first")
    return row


def _customer(row: CustomerRow) -> rollout.Customer:
    return rollout.Customer(row.name, row.email, row.contract_end)


def _openings(s: Session) -> dict[int, dict[int, dt.date]]:
    result: dict[int, dict[int, dt.date]] = {}
    for opening in s.scalars(select(WaveOpeningRow)):
        result.setdefault(opening.release_id, {})[opening.wave] = opening.opens_on
    return result


def _store_blob(package: Path, packages_dir: Path) -> str:
    digest = hashlib.sha256()
    with package.open("rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    dest = packages_dir / digest.hexdigest()
    if not dest.exists():
        packages_dir.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        shutil.copyfile(package, tmp)
        tmp.replace(dest)
    return digest.hexdigest()


def _release_row(info: PackageInfo, digest: str, length: int) -> ReleaseRow:
    return ReleaseRow(
        spec=info.spec,
        kind=info.kind.value,
        version=str(info.version),
        site=info.site,
        target_path=info.target_path,
        sha256=digest,
        length=length,
        custom=info.to_custom(),
        published_at=utcnow(),
    )


def target_file_of(row: ReleaseRow) -> TargetFile:
    return TargetFile(
        row.length, {"sha256": row.sha256}, row.target_path, {"custom": dict(row.custom)}
    )
