"""Release slots on disk: `<data-dir>/releases/<kind>-<version>/` and the links that pick one.

A slot holds `slot.json` (what it is) and `lib/`, the release's wheels installed
as a plain import path. The worker runs with the site slot's `lib/` first on
its path, the supervisor with the base slot's. The factory slot, made on the
first start, has an empty `lib/`: it runs the code installed with the appliance.

Links are switched atomically: a new symlink under a temporary name is renamed
over the old one, so a reader (or a restart) sees the old target or the new one.
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from bastion.platform.files import write_atomically
from bastion.releases.wheels import WheelError, install_wheel
from bastion.supervisor.journal import PlannedRelease

CURRENT, PREVIOUS = "current", "previous"
BASE, BASE_PREVIOUS = "base", "base-previous"
LINKS = (CURRENT, PREVIOUS, BASE, BASE_PREVIOUS)
MANIFEST = "slot.json"


class SlotError(Exception):
    """A release package cannot be unpacked into a slot; the message says why."""


class Releases:
    """The `releases/` directory of one appliance."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "releases"

    def path(self, slot: str) -> Path:
        return self.root / slot

    def lib(self, slot: str) -> Path:
        return self.path(slot) / "lib"

    def target(self, link: str) -> str | None:
        """The slot a link names, or None if the link does not exist."""
        try:
            return os.readlink(self.root / link)
        except FileNotFoundError:
            return None

    def point(self, link: str, slot: str | None) -> None:
        """Make `link` name `slot` (or remove it), atomically and durably."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / link
        if slot is None:
            path.unlink(missing_ok=True)
        else:
            temp = self.root / f".{link}.{os.getpid()}.tmp"
            temp.unlink(missing_ok=True)
            os.symlink(slot, temp)
            os.replace(temp, path)
        _sync_directory(self.root)

    def import_path(self, slot: str) -> Path | None:
        """What goes first on the import path to run `slot`; None: the installed code."""
        return None if self.manifest(slot).get("factory", False) else self.lib(slot)

    def manifest(self, slot: str) -> dict[str, Any]:
        try:
            found = json.loads((self.path(slot) / MANIFEST).read_text())
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def exists(self, slot: str) -> bool:
        return (self.path(slot) / MANIFEST).is_file()

    def ensure_factory(self, kind: str, version: str) -> str:
        """The slot of the code installed with the appliance; made once, then left alone."""
        slot = f"{kind}-{version}"
        if not self.exists(slot):
            (self.lib(slot)).mkdir(parents=True, exist_ok=True)
            body = {"kind": kind, "version": version, "factory": True}
            write_atomically(self.path(slot) / MANIFEST, json.dumps(body).encode(), 0o644)
        return slot

    def slots(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if not p.is_symlink() and (p / MANIFEST).is_file()
        )

    def prune(self) -> list[str]:
        """Delete slots no link names, and half-unpacked ones; what was removed."""
        kept = {self.target(link) for link in LINKS}
        removed = []
        for path in self.root.glob(".staging-*"):
            shutil.rmtree(path, ignore_errors=True)
        for slot in self.slots():
            if slot not in kept:
                shutil.rmtree(self.path(slot), ignore_errors=True)
                removed.append(slot)
        return removed

    def unpack(self, release: PlannedRelease) -> Path:
        """Unpack a verified package and install its wheels into a new slot; return the slot.

        The slot is built under a staging name and renamed into place when whole, so a
        slot that exists is complete. An existing slot of the same name (a release that
        was rolled back earlier) is replaced.
        """
        package = Path(release.package)
        if release.slot in {self.target(link) for link in LINKS}:
            raise SlotError(f"{release.name} is already installed in slot {release.slot}")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{release.slot}-", dir=self.root))
        try:
            wheels = _extract_payload(package, staging / "package")
            if not wheels:
                raise SlotError(f"{package.name} holds no wheel to install")
            for wheel in wheels:
                try:
                    install_wheel(wheel, staging / "lib")
                except WheelError as error:
                    raise SlotError(str(error)) from None
            # Compiled once here, not by each process the install starts from the slot.
            compileall.compile_dir(staging / "lib", quiet=2)
            shutil.rmtree(staging / "package")
            body = {**release.to_dict(), "factory": False, "wheels": [w.name for w in wheels]}
            (staging / MANIFEST).write_text(json.dumps(body, indent=2))
            _sync_tree(staging)
            shutil.rmtree(self.path(release.slot), ignore_errors=True)
            os.rename(staging, self.path(release.slot))
            _sync_directory(self.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.path(release.slot)


def installed_version(data_dir: Path, link: str) -> str | None:
    """The version of the slot a link names (`current`: site, `base`: base), if any."""
    releases = Releases(data_dir)
    slot = releases.target(link)
    version = releases.manifest(slot).get("version") if slot else None
    return str(version) if version else None


def base_version(data_dir: Path) -> str | None:
    """The version of the base the appliance runs, None before the first start."""
    return installed_version(data_dir, BASE)


def _extract_payload(package: Path, out: Path) -> list[Path]:
    """The package's payload wheels, extracted to `out`."""
    out.mkdir(parents=True)
    try:
        with tarfile.open(package, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith("payload/")]
            tar.extractall(out, members=members, filter="data")
    except (OSError, tarfile.TarError) as error:
        raise SlotError(f"{package} cannot be unpacked: {error}") from None
    return sorted((out / "payload").rglob("*.whl"))


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> None:
    for directory, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(Path(directory) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _sync_directory(Path(directory))
