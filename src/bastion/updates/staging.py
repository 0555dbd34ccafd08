"""A release package written into staging while it arrives, its length and every signed
hash checked on the way: one pass over the bytes, as `sha256sum` makes.

TUF's own `Updater.download_target` spools a target to a temporary file, reads it back
to verify it and copies it again; a large release was read and written three times.
Here the signed length and hashes come from the metadata the Updater verified, and the
bytes are hashed as they are written; a file that does not match is deleted, never used.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

Progress = Callable[[int, int], None]


def target_url(base: str, target: TargetFile, consistent_snapshot: bool) -> str:
    """Where the update service (or a bundle) keeps `target`: under its hash when the
    repository uses consistent snapshots, as TUF's Updater asks for it."""
    path = target.path
    if consistent_snapshot:
        directory, slash, name = path.rpartition("/")
        path = f"{directory}{slash}{next(iter(target.hashes.values()))}.{name}"
    return f"{base.rstrip('/')}/{path}"


def _hashers(target: TargetFile) -> dict[str, hashlib._Hash]:
    try:
        return {name: hashlib.new(name) for name in target.hashes}
    except ValueError as error:
        raise tuf_errors.LengthOrHashMismatchError(
            f"{target.path} is signed with a hash this appliance cannot compute ({error})"
        ) from None


def write_verified(
    chunks: Iterator[bytes], target: TargetFile, out: Path, progress: Progress | None = None
) -> Path:
    """Write `chunks` to `out`, hashing them as they go; `out` is kept (and synced to disk)
    only if its length and every hash match what is signed."""
    hashers, done = _hashers(target), 0
    try:
        with out.open("wb") as file:
            for chunk in chunks:
                done += len(chunk)
                if done > target.length:
                    raise tuf_errors.DownloadLengthMismatchError(
                        f"{target.path}: more than the {target.length} bytes signed"
                    )
                for hasher in hashers.values():
                    hasher.update(chunk)
                file.write(chunk)
                if progress is not None:
                    progress(done, target.length)
            _check(target, done, hashers)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out


def _check(target: TargetFile, length: int, hashers: dict[str, hashlib._Hash]) -> None:
    if length != target.length:
        raise tuf_errors.LengthOrHashMismatchError(
            f"{target.path}: {length} bytes, {target.length} signed"
        )
    for name, hasher in hashers.items():
        if hasher.hexdigest() != target.hashes[name]:
            raise tuf_errors.LengthOrHashMismatchError(
                f"{target.path}: its {name} is {hasher.hexdigest()}, {target.hashes[name]} signed"
            )


def holds(path: Path, target: TargetFile) -> bool:
    """Whether `path` is already a verified copy of `target` (re-hashed, not assumed)."""
    if not path.is_file() or path.stat().st_size != target.length:
        return False
    with path.open("rb") as file:
        chunks = iter(lambda: file.read(1 << 20), b"")
        hashers = _hashers(target)
        for chunk in chunks:
            for hasher in hashers.values():
                hasher.update(chunk)
    return all(h.hexdigest() == target.hashes[n] for n, h in hashers.items())
