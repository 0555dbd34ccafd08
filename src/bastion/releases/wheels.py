"""Installing a release's pure-Python wheels into a directory, every file checked against
the wheel's RECORD: what the supervisor does for a slot and a Jump Client for its new
build. No pip, no scripts, no compiled code from a release: the bytecode is compiled here,
from the checked sources, so that every process started from the directory imports it
at once instead of compiling the whole site again (or at every start, where the
environment forbids writing bytecode)."""

from __future__ import annotations

import base64
import compileall
import hashlib
import zipfile
from pathlib import Path, PurePosixPath


class WheelError(Exception):
    """A wheel cannot be installed; the message says which file and why."""


def install_wheel(wheel: Path, lib: Path) -> None:
    """Install a pure-Python wheel into `lib`, checking every file against its RECORD.

    Only what a site or base release carries is supported: importable files and
    `.data/purelib`/`.data/platlib`; scripts and headers are refused by name. Modules are
    compiled to bytecode as they are installed; one that does not compile is left as
    source, to fail where it is imported, as it would have anyway.
    """
    lib.mkdir(parents=True, exist_ok=True)
    sources: list[Path] = []
    try:
        with zipfile.ZipFile(wheel) as archive:
            record = _record_of(archive, wheel)
            for info in archive.infolist():
                if info.is_dir():
                    continue
                target = _target_of(info.filename, wheel)
                data = archive.read(info)
                _check_hash(info.filename, data, record, wheel)
                destination = lib / target
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(data)
                if destination.suffix == ".py":
                    sources.append(destination)
    except (OSError, zipfile.BadZipFile) as error:
        raise WheelError(f"{wheel.name} is not a usable wheel: {error}") from None
    for source in sources:
        compileall.compile_file(source, quiet=2)


def _record_of(archive: zipfile.ZipFile, wheel: Path) -> dict[str, str]:
    names = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD")]
    if len(names) != 1:
        raise WheelError(f"{wheel.name} has no RECORD; it is not a wheel")
    record = {}
    for line in archive.read(names[0]).decode().splitlines():
        path, digest, *_ = [*line.rsplit(",", 2), "", ""]
        if path:
            record[path] = digest
    return record


def _check_hash(name: str, data: bytes, record: dict[str, str], wheel: Path) -> None:
    if name.endswith(".dist-info/RECORD"):
        return
    expected = record.get(name)
    if not expected:
        raise WheelError(f"{wheel.name}: {name} is not listed in the wheel's RECORD")
    algorithm, _, value = expected.partition("=")
    if algorithm != "sha256":
        raise WheelError(f"{wheel.name}: {name} is recorded with {algorithm}, not sha256")
    actual = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    if actual != value:
        raise WheelError(f"{wheel.name}: {name} does not match its RECORD hash; refusing it")


def _target_of(name: str, wheel: Path) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise WheelError(f"{wheel.name}: {name} points outside the slot")
    first = path.parts[0]
    if first.endswith(".data"):
        if len(path.parts) < 3 or path.parts[1] not in ("purelib", "platlib"):
            raise WheelError(f"{wheel.name}: {name} is not importable code; not supported")
        return PurePosixPath(*path.parts[2:])
    return path
