"""The appliance's TUF update client: check, download, import an offline bundle.

One trusted metadata directory, ``<data-dir>/tuf/``, serves online updates and
offline bundles alike, seeded with the vendor root shipped in the site build.
Every operation runs ``tuf.ngclient.Updater`` over a staging copy of that
directory; only when everything verified are the changed files moved back
(temp file + ``os.replace``), so a refused update leaves the trusted metadata
and the stored packages exactly as they were. An offline bundle is read
through ``BundleFetcher``, so it is verified like a download, and a bundle
older than what the appliance already trusts is refused as a rollback.

The fetchers are in :mod:`bastion.updates.fetchers`, the trusted metadata
directory in :mod:`bastion.updates.trusted_store`, writing a package while it
is verified in :mod:`bastion.updates.staging`, the failures and their messages
in :mod:`bastion.updates.failures`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import ssl
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, TargetFile, Targets  # type: ignore[attr-defined]
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig  # type: ignore[attr-defined]

from bastion.releases import download_key as dk
from bastion.releases.packages import PackageError, PackageInfo
from bastion.releases.versions import (
    Assessment,
    DependencyError,
    Release,
    ReleaseKind,
    Version,
    assess,
    install_order,
)
from bastion.updates import staging
from bastion.updates.failures import (
    CorruptBundleError,
    DependencyMissingError,
    NotEnoughDiskError,
    UpdateClientError,
    VerificationError,
    WrongApplianceError,
    translate,
)
from bastion.updates.fetchers import BundleFetcher, GuardFetcher, ServiceFetcher
from bastion.updates.trusted_store import TrustedStore

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReleaseStatus:
    """A release listed in the verified metadata, with its state for this appliance."""

    info: PackageInfo
    target: TargetFile
    assessment: Assessment

    @property
    def release(self) -> Release:
        return self.info.release


def read_targets(tuf_dir: Path) -> dict[str, TargetFile]:
    """Targets from the metadata the Updater just verified and persisted."""
    targets = Metadata[Targets].from_bytes((tuf_dir / "targets.json").read_bytes())
    return dict(targets.signed.targets)


def statuses(
    targets: Mapping[str, TargetFile], installed: Mapping[ReleaseKind, Version], site: str
) -> list[ReleaseStatus]:
    try:
        infos = {p: PackageInfo.from_custom(t.custom) for p, t in targets.items()}
    except PackageError as exc:
        raise VerificationError(f"a signed release description is unusable: {exc}") from exc
    mine = {p: i for p, i in infos.items() if i.site in (None, site)}
    by_release = {i.release: p for p, i in mine.items()}
    result = assess(installed, by_release)
    return [
        ReleaseStatus(mine[by_release[a.release]], targets[by_release[a.release]], a)
        for a in result
    ]


@dataclass(frozen=True)
class Imported:
    """What an offline bundle brought."""

    statuses: list[ReleaseStatus]
    download_key: str
    """The Appliance Download Key the bundle answers: one bundle per key."""
    stored: tuple[str, ...]
    """Packages (by sha256) stored now."""
    held: tuple[str, ...]
    """Packages this appliance held already; the bundle's copies verified all the same."""


@dataclass(frozen=True)
class _Manifest:
    targets: tuple[str, ...]
    download_key: str


@dataclass(frozen=True)
class _Source:
    """Where targets come from: the update service or an unpacked bundle."""

    updater: Updater
    fetcher: FetcherInterface
    targets_url: str
    stage: Path

    @property
    def consistent_snapshot(self) -> bool:
        """From the root the Updater has just verified into the staging copy."""
        root = Metadata[Root].from_bytes((self.stage / "root.json").read_bytes())
        return bool(root.signed.consistent_snapshot)


class UpdateClient:
    """Check, download and import updates for one appliance of one site."""

    def __init__(
        self,
        data_dir: Path,
        site: str,
        appliance_id: str,
        trusted_root: bytes,
        service_url: str = "",
        appliance_key: Path | None = None,
        fetcher: FetcherInterface | None = None,
        reserve_bytes: int = 64 * 2**20,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: what the update service's certificate must chain to (None: the system's
        trust store); `fetcher` replaces the network altogether."""
        self.site, self.appliance_id, self.trusted_root = site, appliance_id, trusted_root
        self.store = TrustedStore(data_dir / "tuf")
        self.packages_dir = data_dir / "blobs" / "sha256"
        self.incoming_dir = data_dir / "incoming"
        self.service_url = service_url.rstrip("/")
        self.appliance_key = appliance_key
        self._http = fetcher
        self._tls = tls
        self.reserve_bytes = reserve_bytes

    def _updater(
        self, stage: Path, base: str, inner: FetcherInterface
    ) -> tuple[Updater, GuardFetcher]:
        guard = GuardFetcher(inner, self.site, f"{base}/metadata/")
        updater = Updater(
            str(stage),
            f"{base}/metadata/",
            str(self.packages_dir),
            f"{base}/targets/",
            guard,
            UpdaterConfig(app_user_agent="bastion-appliance"),
            bootstrap=self.trusted_root,
        )
        return updater, guard

    @property
    def _site_url(self) -> str:
        return f"{self.service_url}/sites/{self.site}"

    @contextmanager
    def _network(self) -> Iterator[FetcherInterface]:
        """The update service, for one operation: its connections close when it ends."""
        if self._http is not None:
            yield self._http
            return
        fetcher = ServiceFetcher(self._tls)
        try:
            yield fetcher
        finally:
            fetcher.close()

    def check(self, installed: Mapping[ReleaseKind, Version]) -> list[ReleaseStatus]:
        """Refresh the metadata from the update service and list releases with their states."""
        try:
            with self._network() as network, self.store.staged() as stage:
                self._updater(stage, self._site_url, network)[0].refresh()
                return statuses(read_targets(stage), installed, self.site)
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            raise translate(exc, self.service_url, offline=False) from exc

    def download(self, release: ReleaseStatus, progress: Progress | None = None) -> Path:
        """Fetch one release and verify it against freshly refreshed metadata, in one pass:
        hashed while it is written into staging, then moved into storage."""
        self._need_space(release.target.length, copies=1)
        try:
            with (
                self._network() as network,
                self.store.staged() as stage,
                self._package_staging() as tmp,
            ):
                updater, guard = self._updater(stage, self._site_url, network)
                source = _Source(updater, guard, f"{self._site_url}/targets", stage)
                verified, final = self._fetch_target(
                    source, release.target.path, tmp, progress, reuse=True
                )
                os.replace(verified, final)
                return final
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            raise translate(exc, self.service_url, offline=False) from exc

    def _fetch_target(
        self, source: _Source, path: str, into: Path, progress: Progress | None, reuse: bool
    ) -> tuple[Path, Path]:
        """Fetch and verify one target into ``into``; return (verified file, final place).

        `reuse`: a copy already in storage that still verifies is kept and nothing is
        fetched. A bundle does not reuse: every package it carries is verified, so a
        damaged bundle is refused even where this appliance holds the package already.
        """
        info = source.updater.get_targetinfo(path)
        if info is None:
            raise VerificationError(
                f"{path} is not listed in the signed metadata of site {self.site}"
            )
        final = self.packages_dir / info.hashes["sha256"]
        if reuse and staging.holds(final, info):
            return final, final
        url = staging.target_url(source.targets_url, info, source.consistent_snapshot)
        verified = staging.write_verified(
            source.fetcher.fetch(url), info, into / final.name, progress
        )
        return verified, final

    @contextmanager
    def _package_staging(self) -> Iterator[Path]:
        self.packages_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.packages_dir, prefix=".dl-") as tmp:
            yield Path(tmp)

    def _need_space(self, length: int, where: Path | None = None, copies: int = 2) -> None:
        target = where or self.packages_dir
        target.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(target).free
        need = copies * length + self.reserve_bytes
        if free < need:
            raise NotEnoughDiskError(
                f"not enough disk space in {target}: {need // 2**20} MiB needed, "
                f"{free // 2**20} MiB free. Free space (old recordings, backups) and retry."
            )

    def plan(
        self, installed: Mapping[ReleaseKind, Version], chosen: list[ReleaseStatus]
    ) -> list[ReleaseStatus]:
        """Install order of the chosen releases; DependencyMissingError names what is missing."""
        by_release = {s.release: s for s in chosen}
        try:
            return [by_release[r] for r in install_order(installed, by_release)]
        except DependencyError as exc:
            raise DependencyMissingError(str(exc)) from exc

    def import_bundle(self, bundle: Path, installed: Mapping[ReleaseKind, Version]) -> Imported:
        """Verify an offline bundle like a download, every package it carries included;
        store its packages; list release states. All or nothing."""
        self._need_space(bundle.stat().st_size, self.incoming_dir)
        with tempfile.TemporaryDirectory(dir=self.incoming_dir, prefix=".bundle-") as tmp:
            root = Path(tmp)
            manifest = self._unpack(bundle, root)
            try:
                with self.store.staged() as stage, self._package_staging() as into:
                    updater, guard = self._updater(stage, root.as_uri(), BundleFetcher(root))
                    updater.refresh()
                    source = _Source(updater, guard, f"{root.as_uri()}/targets", stage)
                    moves = [
                        self._fetch_target(source, p, into, None, reuse=False)
                        for p in manifest.targets
                    ]
                    held = tuple(final.name for _, final in moves if final.is_file())
                    for verified, final in moves:
                        os.replace(verified, final)
                    found = statuses(read_targets(stage), installed, self.site)
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
                raise translate(exc, f"bundle {bundle.name}", offline=True) from exc
        stored = tuple(final.name for _, final in moves if final.name not in held)
        return Imported(found, manifest.download_key, stored, held)

    def _unpack(self, bundle: Path, root: Path) -> _Manifest:
        try:
            with tarfile.open(bundle, "r:") as tar:
                tar.extractall(root, filter="data")
            manifest = json.loads((root / "bundle.json").read_bytes())
            paths = tuple(str(p) for p in manifest["targets"])
        except (OSError, tarfile.TarError, ValueError, KeyError, TypeError) as exc:
            raise CorruptBundleError(
                f"{bundle.name} is not a complete update bundle ({exc}): "
                "upload the whole file again."
            ) from exc
        self._check_addressee(manifest)
        return _Manifest(paths, str(manifest.get("download_key", "")))

    def _check_addressee(self, manifest: dict[str, object]) -> None:
        site, appliance = manifest.get("site"), manifest.get("appliance")
        if site != self.site or appliance != self.appliance_id:
            raise WrongApplianceError(
                f"this bundle was made for appliance {appliance!r} of site {site!r}; this is "
                f"appliance {self.appliance_id!r} of site {self.site!r}. "
                "Use this appliance's own download key."
            )
        if self.appliance_key is not None:
            public = dk.load_appliance_key(self.appliance_key).public_key()
            try:
                dk.verify(str(manifest.get("download_key", "")), public)
            except dk.DownloadKeyFormatError as exc:
                raise WrongApplianceError(
                    f"this bundle answers a download key this appliance did not make ({exc})."
                ) from exc

    def make_download_key(
        self, installed: Mapping[ReleaseKind, Version], clock: dt.datetime | None = None
    ) -> str:
        """The Appliance Download Key shown on the Updates page."""
        if self.appliance_key is None:
            raise UpdateClientError("this appliance has no download-key key file configured")
        versions = {k.value: str(v) for k, v in installed.items()}
        return make_download_key(self.appliance_key, self.site, self.appliance_id, versions, clock)


def make_download_key(
    key_file: Path,
    site: str,
    appliance_id: str,
    installed: dict[str, str],
    clock: dt.datetime | None = None,
) -> str:
    return dk.make_download_key(
        dk.load_appliance_key(key_file), site, appliance_id, installed, clock
    )
