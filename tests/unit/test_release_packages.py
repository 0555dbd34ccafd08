"""Release package descriptions, package files and appliance download keys."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.releases import download_key as dk
from bastion.releases.packages import (
    PackageError,
    PackageInfo,
    anchor_fingerprints,
    build_package,
    parse_spec,
    read_package,
)
from bastion.releases.versions import ReleaseKind, parse_requirement, parse_version
from bastion.update_service.exchange import describe_skew
from tests.support.pki import TestCa


def info(kind: ReleaseKind, site: str | None = None, **licensed: int) -> PackageInfo:
    return PackageInfo(kind, parse_version("1.1"), (), site, dict(licensed))


def test_site_kinds_need_a_site_and_base_has_none() -> None:
    with pytest.raises(PackageError, match="built for one site"):
        info(ReleaseKind.SITE)
    with pytest.raises(PackageError, match="for every site"):
        info(ReleaseKind.BASE, "s.example")


def test_license_needs_its_counts() -> None:
    with pytest.raises(PackageError, match="representatives, endpoints"):
        info(ReleaseKind.LICENSE, "s.example", representatives=5)
    with pytest.raises(PackageError, match="only a license"):
        info(ReleaseKind.SITE, "s.example", endpoints=5)
    lic = info(ReleaseKind.LICENSE, "s.example", representatives=5, endpoints=50)
    assert PackageInfo.from_custom(lic.to_custom()) == lic


def test_package_file_round_trip_with_a_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "bastion-1.1-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 wheel bytes")
    site = PackageInfo(
        ReleaseKind.SITE, parse_version("1.1"), (parse_requirement("base>=1.1"),), "s.example"
    )
    path = build_package(site, [wheel], tmp_path / "out")
    assert path.name == "bastion-site-1.1.tar.gz"
    assert read_package(path) == site
    assert build_package(site, [wheel], tmp_path / "again").read_bytes() == path.read_bytes()


def test_not_a_package_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    with pytest.raises(PackageError, match="not a release package"):
        read_package(junk)


def test_release_spec() -> None:
    assert parse_spec("site:1.1@s.example") == (ReleaseKind.SITE, parse_version("1.1"), "s.example")
    with pytest.raises(PackageError):
        parse_spec("site-1.1")


def test_download_key_round_trip_and_tamper() -> None:
    key = Ed25519PrivateKey.generate()
    text = dk.make_download_key(key, "s.example", "a1", {"base": "1.0"})
    parsed = dk.verify(text, key.public_key())
    assert (parsed.site, parsed.appliance, parsed.installed) == ("s.example", "a1", {"base": "1.0"})
    prefix, _payload, signature = text.split(".")
    other = dk.make_download_key(key, "s.example", "a2", {"base": "1.0"}).split(".")[1]
    with pytest.raises(dk.DownloadKeyFormatError, match="does not verify"):
        dk.verify(f"{prefix}.{other}.{signature}", key.public_key())
    with pytest.raises(dk.DownloadKeyFormatError, match="does not verify"):
        dk.verify(text, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(dk.DownloadKeyFormatError, match="not an appliance download key"):
        dk.verify("hello", key.public_key())


def test_clock_skew_is_said_in_plain_words() -> None:
    assert describe_skew(-dt.timedelta(hours=2, minutes=2, seconds=59)) == "2 h 3 min behind"
    assert describe_skew(dt.timedelta(minutes=7)) == "7 min ahead of"
    assert describe_skew(dt.timedelta(seconds=42)) == "42 s ahead of"


def test_a_site_release_carries_the_fingerprints_of_its_trust_anchors() -> None:
    anchors = anchor_fingerprints(TestCa("one").pem() + TestCa("two").pem())
    assert len(anchors) == 2 and all(len(a) == 64 for a in anchors)
    site = PackageInfo(ReleaseKind.SITE, parse_version("1.1"), (), "s.example", anchors=anchors)
    assert PackageInfo.from_custom(site.to_custom()) == site
    with pytest.raises(PackageError, match="only a site release"):
        PackageInfo(ReleaseKind.BASE, parse_version("1.1"), anchors=anchors)
    with pytest.raises(PackageError, match="64 hex digits"):
        PackageInfo(ReleaseKind.SITE, parse_version("1.1"), (), "s.example", anchors=("AB",))
    with pytest.raises(PackageError, match="not PEM certificates"):
        anchor_fingerprints(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")


def test_the_same_release_builds_the_same_bytes_a_second_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = tmp_path / "bastion-1.1-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 wheel bytes")
    site = PackageInfo(
        ReleaseKind.SITE, parse_version("1.1"), (parse_requirement("base>=1.1"),), "s.example"
    )
    first = build_package(site, [wheel], tmp_path / "out").read_bytes()
    later = time.time() + 1.5
    monkeypatch.setattr(time, "time", lambda: later)  # what a gzip header would carry
    assert build_package(site, [wheel], tmp_path / "again").read_bytes() == first
