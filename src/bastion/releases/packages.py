"""Release packages: a tar.gz holding ``release.json`` and the payload files.

The same description travels in the TUF target's custom metadata under
``"bastion"`` so that an appliance can list releases, their kinds and their
requirements from signed metadata before downloading anything.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from bastion.releases.versions import (
    Release,
    ReleaseKind,
    Requirement,
    Version,
    VersionError,
    parse_kind,
    parse_requirement,
    parse_version,
)

MANIFEST = "release.json"
MAX_ANCHORS = 16
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
LICENSED_COUNTS = ("representatives", "endpoints")


class PackageError(Exception):
    """A release package is malformed or its description is invalid."""

    status = 400


@dataclass(frozen=True)
class PackageInfo:
    """What a package is: kind, version, requirements, site and licensed counts; a site
    release also names the trust anchors it was built with (SHA-256 fingerprints of the
    certificates the site's served chain leads to from that version on)."""

    kind: ReleaseKind
    version: Version
    requires: tuple[Requirement, ...] = ()
    site: str | None = None
    licensed: dict[str, int] = field(default_factory=dict)
    anchors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_site(self.kind, self.site)
        _check_licensed(self.kind, self.licensed)
        _check_anchors(self.kind, self.anchors)

    @property
    def spec(self) -> str:
        return f"{self.kind.value}:{self.version}" + (f"@{self.site}" if self.site else "")

    @property
    def file_name(self) -> str:
        return f"bastion-{self.kind.value}-{self.version}.tar.gz"

    @property
    def target_path(self) -> str:
        return f"{self.kind.value}/{self.file_name}"

    @property
    def release(self) -> Release:
        return Release(self.kind, self.version, self.requires, self.site)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": self.kind.value,
            "version": str(self.version),
            "requires": [str(r) for r in self.requires],
            "site": self.site,
        }
        if self.licensed:
            body["licensed"] = dict(self.licensed)
        if self.anchors:
            body["anchors"] = list(self.anchors)
        return body

    def to_custom(self) -> dict[str, Any]:
        return {"bastion": self.to_dict()}

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> PackageInfo:
        try:
            return cls(
                kind=parse_kind(body["kind"]),
                version=parse_version(body["version"]),
                requires=tuple(parse_requirement(r) for r in body.get("requires", [])),
                site=body.get("site"),
                licensed={k: int(v) for k, v in body.get("licensed", {}).items()},
                anchors=tuple(str(a) for a in body.get("anchors", [])),
            )
        except (KeyError, TypeError, ValueError, VersionError) as exc:
            raise PackageError(f"release description is invalid: {exc}") from exc

    @classmethod
    def from_custom(cls, custom: Any) -> PackageInfo:
        if not isinstance(custom, dict) or not isinstance(custom.get("bastion"), dict):
            raise PackageError("target has no 'bastion' release description")
        return cls.from_dict(custom["bastion"])


def _check_site(kind: ReleaseKind, site: str | None) -> None:
    if kind.is_site_specific and not site:
        raise PackageError(f"a {kind.value} release is built for one site: give its site")
    if not kind.is_site_specific and site:
        raise PackageError("a base release is for every site: do not give a site")


def _check_licensed(kind: ReleaseKind, licensed: dict[str, int]) -> None:
    if kind is not ReleaseKind.LICENSE:
        if licensed:
            raise PackageError("only a license release carries licensed counts")
        return
    missing = [c for c in LICENSED_COUNTS if c not in licensed]
    if missing or any(v < 0 for v in licensed.values()):
        raise PackageError(f"a license release needs counts >= 0 for {', '.join(LICENSED_COUNTS)}")


def _check_anchors(kind: ReleaseKind, anchors: tuple[str, ...]) -> None:
    if anchors and kind is not ReleaseKind.SITE:
        raise PackageError("only a site release is built with trust anchors")
    if len(anchors) > MAX_ANCHORS or not all(_FINGERPRINT.fullmatch(a) for a in anchors):
        raise PackageError(
            f"trust anchors are up to {MAX_ANCHORS} SHA-256 fingerprints (64 hex digits each)"
        )


def anchor_fingerprints(pem: bytes) -> tuple[str, ...]:
    """SHA-256 fingerprints of the certificates in a PEM bundle, as clients report theirs."""
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise PackageError(f"the trust anchors are not PEM certificates: {error}") from None
    return tuple(cert.fingerprint(hashes.SHA256()).hex() for cert in certificates)[:MAX_ANCHORS]


def parse_spec(spec: str) -> tuple[ReleaseKind, Version, str | None]:
    """Parse "site:1.1@support.example.com" or "base:1.1"."""
    head, _, site = spec.partition("@")
    kind, sep, version = head.partition(":")
    if not sep:
        raise PackageError(f"release {spec!r} is not of the form kind:version[@site]")
    try:
        return parse_kind(kind), parse_version(version), site or None
    except VersionError as exc:
        raise PackageError(str(exc)) from exc


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
    with path.open("rb") as data:
        tar.addfile(info, data)


def _payload_files(sources: Iterable[Path]) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for source in sources:
        if source.is_dir():
            files += [
                (str(p.relative_to(source.parent)), p) for p in source.rglob("*") if p.is_file()
            ]
        elif source.is_file():
            files.append((source.name, source))
        else:
            raise PackageError(f"{source} does not exist")
    return sorted(files)


def build_package(info: PackageInfo, sources: Iterable[Path], out_dir: Path) -> Path:
    """Write ``out_dir/<file name>`` holding the manifest and the payload (files or a wheel)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / info.file_name
    manifest = json.dumps(info.to_dict(), indent=2, sort_keys=True).encode()
    with (
        out.open("wb") as raw,
        # the gzip header's time fixed too, so that the same release builds the same bytes
        gzip.GzipFile(out.name, "wb", compresslevel=6, fileobj=raw, mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        _add_bytes(tar, MANIFEST, manifest)
        for name, path in _payload_files(sources):
            _add_file(tar, f"payload/{name}", path)
    return out


def read_package(path: Path) -> PackageInfo:
    """The description inside a package file."""
    try:
        with tarfile.open(path, "r:*") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise PackageError(f"{path} holds no {MANIFEST}")
            return PackageInfo.from_dict(json.loads(member.read()))
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path} is not a release package: {exc}") from exc


def licence_text(package: Path, version: Version) -> str:
    """The licence agreement a release package carries: a LICENSE file, else its wheel's
    licence; a sentence saying there is none otherwise."""
    try:
        with tarfile.open(package, "r:*") as tar:
            for member in tar.getmembers():
                if member.isfile() and re.fullmatch(r"payload/LICEN[CS]E[^/]*", member.name):
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        return extracted.read().decode(errors="replace")
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(".whl"):
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        return _wheel_licence(extracted, version)
    except (OSError, tarfile.TarError):
        pass
    return f"Bastion {version}: the package carries no licence text."


def _wheel_licence(data: Any, version: Version) -> str:
    with zipfile.ZipFile(data) as wheel:
        names = wheel.namelist()
        for name in names:
            if ".dist-info/licenses/" in name:
                return wheel.read(name).decode(errors="replace")
        metadata = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        if metadata is not None:
            for line in wheel.read(metadata).decode(errors="replace").splitlines():
                if line.startswith(("License-Expression:", "License:")):
                    licence = line.split(":", 1)[1].strip()
                    return f"Bastion {version} is licensed under {licence}."
    return f"Bastion {version}: the package carries no licence text."
