"""Download-key exchange: an appliance's key in, an offline bundle out (R24-R26).

A bundle is an uncompressed tar::

    bundle.json            format, site, appliance, the download key answered,
                           creation time, the target paths inside
    metadata/...           the site's current signed TUF metadata (every root
                           version, targets, snapshot, timestamp)
    targets/...            each release the appliance may install now, under
                           its consistent-snapshot name (<sha256>.<file name>)

The appliance verifies it exactly as an online update, through a fetcher that
reads these files. Releases put in a bundle are recorded as handed out and are
listed as `taken` for that appliance from then on. A new download key gets them
again (a bundle may have arrived damaged), recorded again; a key is answered once.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.releases import download_key as dk
from bastion.releases.packages import PackageInfo
from bastion.releases.versions import (
    Assessment,
    Release,
    ReleaseKind,
    Version,
    assess,
    parse_kind,
    parse_version,
)
from bastion.update_service.errors import (
    ClockSkewError,
    DownloadKeyError,
    KeyAlreadyAnsweredError,
    NothingToDownloadError,
)
from bastion.update_service.store import ApplianceRow, HandoutRow, ReleaseRow
from bastion.update_service.vendor import Vendor, target_file_of

BUNDLE_FORMAT = 1


@dataclass(frozen=True)
class Offer:
    """What one verified download key may have: every visible release with its state."""

    key: dk.DownloadKey
    text: str
    assessments: list[Assessment]
    """As the offer lists them: a release handed out before is `taken`."""
    rows: dict[Release, ReleaseRow]
    again: list[Assessment]
    """The same releases as if none had been handed out: what a new key may get again."""

    @property
    def offered(self) -> list[Assessment]:
        """What a bundle carries: releases installable now or after others it carries,
        those handed out for an earlier key included."""
        return [a for a in self.again if a.resolvable]

    def row(self, a: Assessment) -> ReleaseRow:
        return self.rows[a.release]


def describe_skew(skew: dt.timedelta) -> str:
    """ "2 h 3 min behind" / "45 s ahead of": minutes once the skew passes a minute."""
    seconds = round(abs(skew.total_seconds()))
    if seconds >= 60:
        hours, minutes = divmod(round(seconds / 60), 60)
        amount = " ".join([f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes))
    else:
        amount = f"{seconds} s"
    return amount + (" behind" if skew.total_seconds() < 0 else " ahead of")


def check_clock(key: dk.DownloadKey, now: dt.datetime, tolerance: dt.timedelta) -> None:
    if key.clock.tzinfo is None:
        raise DownloadKeyError("the download key's clock has no time zone: make a new key")
    skew = key.clock - now
    if abs(skew) > tolerance:
        raise ClockSkewError(
            f"The appliance's clock is wrong: it is {describe_skew(skew)} the update "
            f"service's clock (appliance {key.clock.isoformat()}, update service "
            f"{now.isoformat()}). Set the appliance clock or its NTP server "
            "(/appliance > Networking > IP Configuration), then make a new download key."
        )


def verify_key(s: Session, text: str, now: dt.datetime, tolerance: dt.timedelta) -> dk.DownloadKey:
    """Signature, enrolment, site and clock checks, in that order."""
    try:
        claimed = dk.peek(text)
        appliance = s.get(ApplianceRow, claimed.appliance)
        if appliance is None:
            raise DownloadKeyError(
                f"appliance {claimed.appliance!r} is not enrolled with the update service: "
                "ask the vendor to enrol it with its public key"
            )
        key = dk.verify(text, dk.parse_public_key(appliance.public_key))
    except dk.DownloadKeyFormatError as exc:
        raise DownloadKeyError(str(exc)) from exc
    if key.site != appliance.site:
        raise DownloadKeyError(
            f"appliance {key.appliance!r} belongs to another site than {key.site!r}"
        )
    check_clock(key, now, tolerance)
    return key


def _installed(key: dk.DownloadKey) -> dict[ReleaseKind, Version]:
    try:
        return {parse_kind(k): parse_version(v) for k, v in key.installed.items()}
    except ValueError as exc:
        raise DownloadKeyError(
            f"the download key lists an invalid installed version: {exc}"
        ) from exc


def offer(vendor: Vendor, text: str, now: dt.datetime, tolerance: dt.timedelta) -> Offer:
    with vendor.session() as s:
        key = verify_key(s, text, now, tolerance)
        rows = vendor.visible_releases(s, key.site, now.date())
        taken_ids = set(
            s.scalars(select(HandoutRow.release_id).where(HandoutRow.appliance_id == key.appliance))
        )
    infos = {r.spec: PackageInfo.from_custom(r.custom) for r in rows}
    taken = [infos[r.spec].release for r in rows if r.id in taken_ids]
    releases, installed = [i.release for i in infos.values()], _installed(key)
    by_release = {infos[r.spec].release: r for r in rows}
    return Offer(
        key, text, assess(installed, releases, taken), by_release, assess(installed, releases)
    )


HANDOUTS = threading.Lock()
"""One handout at a time in this process, so that a key is answered once."""


def hand_out(
    vendor: Vendor, text: str, requested_from: str, now: dt.datetime, tolerance: dt.timedelta
) -> Path:
    """Build the bundle for a key, record what it holds, return the bundle file.

    A key already answered is refused; a new key of the same appliance gets again what
    was handed out before, and that handout is recorded too.
    """
    with HANDOUTS:
        found = offer(vendor, text, now, tolerance)
        _refuse_answered(vendor, found.key)
        if not found.offered:
            raise NothingToDownloadError(_nothing_message(found))
        rows = [found.row(a) for a in found.offered]
        bundle = write_bundle(vendor, found, rows, now)
        _record(vendor, found, rows, requested_from, now)
    return bundle


def _refuse_answered(vendor: Vendor, key: dk.DownloadKey) -> None:
    with vendor.session() as s:
        answered = s.scalars(
            select(HandoutRow.handed_at).where(
                HandoutRow.appliance_id == key.appliance, HandoutRow.key_nonce == key.nonce
            )
        ).first()
    if answered is not None:
        raise KeyAlreadyAnsweredError(
            f"This download key was already answered on {answered:%Y-%m-%d %H:%M} UTC; each "
            "key gets one bundle. To get the releases again, make a new key on the appliance "
            "(/appliance > Updates > Manual Installation, or `bastion appliance updates "
            "download-key`) and submit that one."
        )


def _record(
    vendor: Vendor, found: Offer, rows: list[ReleaseRow], requested_from: str, now: dt.datetime
) -> None:
    with vendor.session() as s:
        for row in rows:
            s.add(
                HandoutRow(
                    appliance_id=found.key.appliance,
                    release_id=row.id,
                    handed_at=now,
                    key_nonce=found.key.nonce,
                    requested_from=requested_from,
                )
            )


def _nothing_message(found: Offer) -> str:
    return f"nothing to download for appliance {found.key.appliance!r}: it is up to date"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def write_bundle(vendor: Vendor, found: Offer, rows: list[ReleaseRow], now: dt.datetime) -> Path:
    repo = vendor.site_repository(found.key.site)
    targets = [target_file_of(r) for r in rows]
    manifest = {
        "format": BUNDLE_FORMAT,
        "site": found.key.site,
        "appliance": found.key.appliance,
        "download_key": found.text,
        "created": now.isoformat(),
        "targets": [t.path for t in targets],
    }
    out_dir = vendor.data_dir / "bundles"
    out_dir.mkdir(exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out_dir, suffix=".tar")
    with (
        open(fd, "wb") as out,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        _add(tar, "bundle.json", json.dumps(manifest, indent=2).encode())
        for path in repo.metadata_files():
            tar.add(path, f"metadata/{path.name}", recursive=False)
        for target in targets:
            tar.add(repo.target_file(target), f"targets/{target.get_prefixed_paths()[0]}")
    return Path(name)


def bundle_name(key: dk.DownloadKey, now: dt.datetime) -> str:
    return f"bastion-updates-{key.appliance}-{now:%Y%m%dT%H%M%SZ}.tar"
