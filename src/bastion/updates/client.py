"""The appliance's TUF update client: check, download, import an offline bundle.

One trusted metadata directory, ``<data-dir>/tuf/``, serves online updates and
offline bundles alike, seeded with the vendor root shipped in the site build.
Every operation runs ``tuf.ngclient.Updater`` over a staging copy of that
directory; only when everything verified are the changed files moved back
(temp file + ``os.replace``), so a refused update leaves the trusted metadata
and the stored packages exactly as they were. An offline bundle is read
through ``BundleFetcher``, so it is verified like a download, and a bundle
older than what the appliance already trusts is refused as a rollback.

The fetchers are in :mod:`bastion.updates.fetchers`, the trusted
metadata directory in :mod:`bastion.updates.trusted_store`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, TargetFile, Targets  # type: ignore[attr-defined]
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig  # type: ignore[attr-defined]
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

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
from bastion.updates.fetchers import BundleFetcher, GuardFetcher, _ForeignSiteError
from bastion.updates.trusted_store import TrustedStore

Progress = Callable[[int, int], None]


class UpdateClientError(Exception):
    """An update could not be checked, downloaded or imported; the message says why."""


class UpdateServiceUnreachableError(UpdateClientError):
    pass


class VerificationError(UpdateClientError):
    """A signature, length or hash does not verify."""


class RollbackError(VerificationError):
    """Metadata older than what the appliance already trusts (a replay)."""


class MetadataExpiredError(UpdateClientError):
    pass


class DependencyMissingError(UpdateClientError):
    pass


class NotEnoughDiskError(UpdateClientError):
    pass


class WrongApplianceError(UpdateClientError):
    """The files are for another appliance or another site."""


class CorruptBundleError(UpdateClientError):
    pass


MANUAL = "Use Manual Installation with an Appliance Download Key if this persists."


@dataclass(frozen=True)
class ReleaseStatus:
    """A release listed in the verified metadata, with its state for this appliance."""

    info: PackageInfo
    target: TargetFile
    assessment: Assessment

    @property
    def release(self) -> Release:
        return self.info.release


def _cause_chain(exc: BaseException) -> Iterator[BaseException]:
    current: BaseException | None = exc
    while current is not None:
        yield current
        current = current.__cause__ or current.__context__


def translate(exc: Exception, source: str, offline: bool) -> UpdateClientError:
    """One actionable message per failure kind."""
    foreign = next((e for e in _cause_chain(exc) if isinstance(e, _ForeignSiteError)), None)
    if foreign is not None:
        return WrongApplianceError(
            f"{source} holds update metadata {foreign}, not for this appliance's site: "
            "get the files for this site (use this appliance's own download key)."
        )
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        return MetadataExpiredError(
            f"the update metadata from {source} has expired ({exc}). Either the files are stale "
            f"or this appliance's clock is wrong: it reads {now} UTC. Check the clock and NTP "
            "server (/appliance > Status > Basics, Networking > IP Configuration), then get "
            "fresh files."
        )
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        return RollbackError(
            f"the update metadata from {source} is older than what this appliance already "
            f"trusts ({exc}): an old or replayed copy. Nothing was changed; get current files."
        )
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return VerificationError(
            f"a signature from {source} does not verify ({exc}): the files were not signed "
            "with the vendor's keys. Nothing was installed; do not use these files."
        )
    if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
        return VerificationError(
            f"a file from {source} is longer than its signed length ({exc}): it was altered "
            "or replaced. Nothing was installed; get the files again."
        )
    if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        return VerificationError(
            f"a file from {source} does not match its signed hash ({exc}): it was altered or "
            "damaged in transit. Nothing was installed; get the files again."
        )
    if isinstance(exc, tuf_errors.RepositoryError):
        return VerificationError(f"the update metadata from {source} does not verify: {exc}")
    if offline:
        return CorruptBundleError(
            f"the bundle is incomplete or damaged ({exc}): upload the whole file again."
        )
    if isinstance(exc, tuf_errors.DownloadHTTPError):
        return UpdateServiceUnreachableError(
            f"the update service at {source} answered HTTP {exc.status_code}. {MANUAL}"
        )
    return UpdateServiceUnreachableError(
        f"cannot reach the update service at {source} ({exc}): check the network, DNS and "
        f"proxy settings. {MANUAL}"
    )


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
    ) -> None:
        self.site, self.appliance_id, self.trusted_root = site, appliance_id, trusted_root
        self.store = TrustedStore(data_dir / "tuf")
        self.packages_dir = data_dir / "blobs" / "sha256"
        self.incoming_dir = data_dir / "incoming"
        self.service_url = service_url.rstrip("/")
        self.appliance_key = appliance_key
        self._http = fetcher
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

    def _online(self, stage: Path) -> tuple[Updater, GuardFetcher]:
        return self._updater(stage, self._site_url, self._http or Urllib3Fetcher(socket_timeout=15))

    def check(self, installed: Mapping[ReleaseKind, Version]) -> list[ReleaseStatus]:
        """Refresh the metadata from the update service and list releases with their states."""
        try:
            with self.store.staged() as stage:
                self._online(stage)[0].refresh()
                return statuses(read_targets(stage), installed, self.site)
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            raise translate(exc, self.service_url, offline=False) from exc

    def download(self, release: ReleaseStatus, progress: Progress | None = None) -> Path:
        """Fetch one release and verify it against freshly refreshed metadata."""
        self._need_space(release.target.length)
        try:
            with self.store.staged() as stage, self._package_staging() as tmp:
                updater, guard = self._online(stage)
                verified, final = self._fetch_target(
                    updater, guard, release.target.path, tmp, progress
                )
                os.replace(verified, final)
                return final
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            raise translate(exc, self.service_url, offline=False) from exc

    def _fetch_target(
        self,
        updater: Updater,
        guard: GuardFetcher,
        path: str,
        into: Path,
        progress: Progress | None,
    ) -> tuple[Path, Path]:
        """Download and verify one target into ``into``; return (verified file, final place)."""
        info = updater.get_targetinfo(path)
        if info is None:
            raise VerificationError(
                f"{path} is not listed in the signed metadata of site {self.site}"
            )
        final = self.packages_dir / info.hashes["sha256"]
        if updater.find_cached_target(info, str(final)):
            return final, final
        guard.progress = (lambda done: progress(done, info.length)) if progress else None
        verified = into / final.name
        updater.download_target(info, str(verified))
        return verified, final

    @contextmanager
    def _package_staging(self) -> Iterator[Path]:
        self.packages_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.packages_dir, prefix=".dl-") as tmp:
            yield Path(tmp)

    def _need_space(self, length: int, where: Path | None = None) -> None:
        target = where or self.packages_dir
        target.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(target).free
        need = 2 * length + self.reserve_bytes
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

    def import_bundle(
        self, bundle: Path, installed: Mapping[ReleaseKind, Version]
    ) -> list[ReleaseStatus]:
        """Verify an offline bundle like a download; store its packages; list release states."""
        self._need_space(bundle.stat().st_size, self.incoming_dir)
        with tempfile.TemporaryDirectory(dir=self.incoming_dir, prefix=".bundle-") as tmp:
            root = Path(tmp)
            paths = self._unpack(bundle, root)
            try:
                with self.store.staged() as stage, self._package_staging() as into:
                    updater, guard = self._updater(stage, root.as_uri(), BundleFetcher(root))
                    updater.refresh()
                    moves = [self._fetch_target(updater, guard, p, into, None) for p in paths]
                    for verified, final in moves:
                        os.replace(verified, final)
                    return statuses(read_targets(stage), installed, self.site)
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
                raise translate(exc, f"bundle {bundle.name}", offline=True) from exc

    def _unpack(self, bundle: Path, root: Path) -> list[str]:
        try:
            with tarfile.open(bundle, "r:") as tar:
                tar.extractall(root, filter="data")
            manifest = json.loads((root / "bundle.json").read_bytes())
            paths = [str(p) for p in manifest["targets"]]
        except (OSError, tarfile.TarError, ValueError, KeyError, TypeError) as exc:
            raise CorruptBundleError(
                f"{bundle.name} is not a complete update bundle ({exc}): "
                "upload the whole file again."
            ) from exc
        self._check_addressee(manifest)
        return paths

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
