"""TUF metadata on disk: the vendor's root history and one repository per site.

Layout under the service's data directory::

    repo.json                 root threshold and per-role expiry (seconds)
    root/<n>.root.json        every root version ever signed (shared by all sites)
    sites/<site>/metadata/    <n>.root.json (copies), <n>.targets.json,
                              <n>.snapshot.json, timestamp.json
    sites/<site>/targets/     <kind>/<sha256>.<file name> (hard links to packages/)

Consistent snapshots are always on. The signed part of every targets,
snapshot and timestamp file carries ``x-bastion-site`` so an appliance can
refuse metadata signed for another site even though all sites share the
vendor's keys.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from bastion.platform.files import write_atomically
from bastion.update_service.errors import RepositoryStateError
from bastion.update_service.keys import ALL_ROLES, KeyRing

SITE_FIELD = "x-bastion-site"
DAY = 24 * 3600
DEFAULT_EXPIRY = {"root": 365 * DAY, "targets": 90 * DAY, "snapshot": 7 * DAY, "timestamp": DAY}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def atomic_write(path: Path, data: bytes) -> None:
    """Repository files are public: readable by the web server as well as the vendor."""
    write_atomically(path, data, mode=0o644)


@dataclass
class RepoConfig:
    root_threshold: int = 1
    expiry: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_EXPIRY))

    @classmethod
    def load(cls, data_dir: Path) -> RepoConfig:
        path = data_dir / "repo.json"
        if not path.exists():
            raise RepositoryStateError(f"{data_dir} holds no repository: run 'release init-repo'")
        raw = json.loads(path.read_text())
        return cls(raw["root_threshold"], {**DEFAULT_EXPIRY, **raw["expiry"]})

    def save(self, data_dir: Path) -> None:
        body = {"root_threshold": self.root_threshold, "expiry": self.expiry}
        atomic_write(data_dir / "repo.json", json.dumps(body, indent=2).encode())

    def expires(self, role: str, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.expiry[role])


def sign_into(md: Metadata[Any], signers: KeyRing, role: str) -> bytes:
    md.signatures.clear()
    for signer in signers.of(role):
        md.sign(signer, append=True)
    return md.to_bytes()


class RootHistory:
    """The vendor's root metadata versions, shared by every site repository."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "root"

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("*.root.json"), key=lambda p: int(p.name.split(".")[0]))

    def latest(self) -> Metadata[Root]:
        files = self.files()
        if not files:
            raise RepositoryStateError(f"no root metadata in {self.dir}: run 'release init-repo'")
        return Metadata[Root].from_bytes(files[-1].read_bytes())

    def latest_bytes(self) -> bytes:
        return self.files()[-1].read_bytes()

    def create(self, ring: KeyRing, config: RepoConfig, now: dt.datetime) -> Metadata[Root]:
        ring.require(ALL_ROLES, {"root": config.root_threshold})
        root = Root(expires=config.expires("root", now), consistent_snapshot=True)
        for role in ALL_ROLES:
            for signer in ring.of(role):
                root.add_key(signer.public_key, role)
        root.roles["root"].threshold = config.root_threshold
        md = Metadata(root)
        atomic_write(self.dir / "1.root.json", sign_into(md, ring, "root"))
        return md

    def rotate(
        self, old: KeyRing, new_signers: list[CryptoSigner], retire: set[str], config: RepoConfig
    ) -> Metadata[Root]:
        """Sign root n+1 with the old root keys and the new ones, as TUF requires."""
        current = self.latest()
        old.require(("root",), role_thresholds(current.signed))
        root = current.signed
        for keyid in retire:
            root.revoke_key(keyid, "root")
        for signer in new_signers:
            root.add_key(signer.public_key, "root")
        root.roles["root"].threshold = config.root_threshold
        root.version += 1
        root.expires = config.expires("root", utcnow())
        md = Metadata(root)
        for signer in [*old.of("root"), *new_signers]:
            md.sign(signer, append=True)
        atomic_write(self.dir / f"{root.version}.root.json", md.to_bytes())
        return md


def role_thresholds(root: Root) -> dict[str, int]:
    return {name: role.threshold for name, role in root.roles.items()}


class SiteRepository:
    """One TUF repository holding only the targets one site may install."""

    def __init__(self, data_dir: Path, site: str, config: RepoConfig) -> None:
        self.site = site
        self.config = config
        self.path = data_dir / "sites" / site
        self.metadata_dir = self.path / "metadata"
        self.targets_dir = self.path / "targets"

    @property
    def initialised(self) -> bool:
        return (self.metadata_dir / "timestamp.json").exists()

    def sync_roots(self, history: RootHistory) -> None:
        for path in history.files():
            dest = self.metadata_dir / path.name
            if not dest.exists():
                atomic_write(dest, path.read_bytes())

    def timestamp(self) -> Metadata[Timestamp]:
        return Metadata[Timestamp].from_file(str(self.metadata_dir / "timestamp.json"))

    def snapshot(self) -> Metadata[Snapshot]:
        version = self.timestamp().signed.snapshot_meta.version
        return Metadata[Snapshot].from_file(str(self.metadata_dir / f"{version}.snapshot.json"))

    def targets(self) -> Metadata[Targets]:
        version = self.snapshot().signed.meta["targets.json"].version
        return Metadata[Targets].from_file(str(self.metadata_dir / f"{version}.targets.json"))

    def current_targets(self) -> dict[str, TargetFile]:
        return dict(self.targets().signed.targets) if self.initialised else {}

    def metadata_files(self) -> list[Path]:
        """The files a client needs now: every root, current targets and snapshot, timestamp."""
        snapshot_version = self.timestamp().signed.snapshot_meta.version
        targets_version = self.snapshot().signed.meta["targets.json"].version
        roots = sorted(self.metadata_dir.glob("*.root.json"))
        current = [f"{targets_version}.targets.json", f"{snapshot_version}.snapshot.json"]
        return [*roots, *(self.metadata_dir / n for n in [*current, "timestamp.json"])]

    def target_file(self, target: TargetFile) -> Path:
        return self.targets_dir / target.get_prefixed_paths()[0]

    def publish(
        self, targets: Mapping[str, TargetFile], blobs: Mapping[str, Path], ring: KeyRing
    ) -> None:
        """Sign a new targets, snapshot and timestamp listing exactly ``targets``."""
        for path, blob in blobs.items():
            _link(blob, self.target_file(targets[path]))
        version = self.snapshot().signed.meta["targets.json"].version + 1 if self.initialised else 1
        signed = Targets(
            version=version,
            expires=self.config.expires("targets", utcnow()),
            targets=dict(targets),
            unrecognized_fields={SITE_FIELD: self.site},
        )
        data = self._write(Metadata(signed), ring, "targets", f"{version}.targets.json")
        self._sign_snapshot(MetaFile.from_data(version, data, ["sha256"]), ring)

    def refresh(self, ring: KeyRing) -> bool:
        """Re-sign whichever role has less than half its lifetime left; say if anything was."""
        if not self.initialised:
            return False
        if self._expiring(self.targets().signed, "targets"):
            self.publish(self.current_targets(), {}, ring)
        elif self._expiring(self.snapshot().signed, "snapshot"):
            self._sign_snapshot(self.snapshot().signed.meta["targets.json"], ring)
        elif self._expiring(self.timestamp().signed, "timestamp"):
            self._sign_timestamp(self.timestamp().signed.snapshot_meta, ring)
        else:
            return False
        return True

    def _expiring(self, signed: Signed, role: str) -> bool:
        half = dt.timedelta(seconds=self.config.expiry[role] / 2)
        return signed.expires - half <= utcnow()

    def _sign_snapshot(self, targets_meta: MetaFile, ring: KeyRing) -> None:
        version = self.timestamp().signed.snapshot_meta.version + 1 if self.initialised else 1
        signed = Snapshot(
            version=version,
            expires=self.config.expires("snapshot", utcnow()),
            meta={"targets.json": targets_meta},
            unrecognized_fields={SITE_FIELD: self.site},
        )
        data = self._write(Metadata(signed), ring, "snapshot", f"{version}.snapshot.json")
        self._sign_timestamp(MetaFile.from_data(version, data, ["sha256"]), ring)

    def _sign_timestamp(self, snapshot_meta: MetaFile, ring: KeyRing) -> None:
        version = self.timestamp().signed.version + 1 if self.initialised else 1
        signed = Timestamp(
            version=version,
            expires=self.config.expires("timestamp", utcnow()),
            snapshot_meta=snapshot_meta,
            unrecognized_fields={SITE_FIELD: self.site},
        )
        self._write(Metadata(signed), ring, "timestamp", "timestamp.json")

    def _write(self, md: Metadata[Any], ring: KeyRing, role: str, name: str) -> bytes:
        data = sign_into(md, ring, role)
        atomic_write(self.metadata_dir / name, data)
        return data


def _link(blob: Path, dest: Path) -> None:
    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(blob, dest)
    except OSError:
        shutil.copyfile(blob, dest)
