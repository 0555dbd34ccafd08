"""Durable files: written whole or not at all, secrets readable by their owner only, and
locks that one process at a time holds."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _temporary_copy(path: Path, data: bytes, mode: int) -> Path:
    """`data` in a new fsynced file beside `path` (same file system, so rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: a reader sees the old or the new content, never a part."""
    temp = _temporary_copy(path, data, mode)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def create_once(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Create `path` with `data` unless it exists; never overwrites. True if this call made it.

    Two processes racing end up with the same file: the link of the loser fails.
    """
    temp = _temporary_copy(path, data, mode)
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        temp.unlink()
    return True


class LockBusyError(Exception):
    """Another process holds the lock."""


@contextmanager
def exclusively(lock: Path) -> Iterator[None]:
    """Hold the lock file `lock` (made if missing) for the block; busy: `LockBusyError`."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusyError(str(lock)) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
