"""The archive inside a backup's encrypted body: named members, framed as records.

Writing and reading the member records (layout in :mod:`bastion.backups.container`),
the rules a member name must follow, and writing members into a directory. It
works on plaintext; sealing and opening the chunks is done by ``backup_file``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal, Protocol

from bastion.backups.rules import BackupError

BLOCK_SIZE = 256 * 1024

Member = tuple[str, bytes | BinaryIO]


class BackupCorruptError(BackupError):
    """Some bytes of the file were changed."""


@dataclass(frozen=True)
class MemberInfo:
    name: str
    size: int


# -- member names --------------------------------------------------------------


def _is_safe_member_name(name: str) -> bool:
    return not (
        not name
        or PurePosixPath(name).is_absolute()
        or any(part in ("", ".", "..") for part in name.split("/"))
        or "\\" in name
        or "\0" in name
        or len(name.encode("utf-8")) > 1024
    )


class _MemberNames:
    """Member names seen so far: each safe, unique, and never both a file and a directory."""

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._directories: set[str] = set()

    def admit(self, name: str) -> str | None:
        """Record ``name``; say why it is refused, if it is."""
        if not _is_safe_member_name(name):
            return f"The member name {name!r} is not a safe relative path."
        parents = {"/".join(name.split("/")[:i]) for i in range(1, name.count("/") + 1)}
        if name in self._files or name in self._directories or parents & self._files:
            return f"The member name {name!r} is given twice or clashes with another member."
        self._files.add(name)
        self._directories |= parents
        return None


# -- writing -------------------------------------------------------------------


class _Sink(Protocol):
    """Where the records go: the chunk sealer of ``backup_file``."""

    def write(self, data: bytes | memoryview) -> None: ...


def _member_blocks(content: bytes | BinaryIO) -> Iterator[bytes | memoryview]:
    if isinstance(content, bytes | bytearray | memoryview):
        view = memoryview(content)
        for start in range(0, len(view), BLOCK_SIZE):
            yield view[start : start + BLOCK_SIZE]
        return
    while block := content.read(BLOCK_SIZE):
        yield block


def _write_members(sealer: _Sink, members: Iterable[Member]) -> None:
    names = _MemberNames()
    for name, content in members:
        if problem := names.admit(name):
            raise ValueError(problem)
        encoded = name.encode("utf-8")
        sealer.write(b"M" + struct.pack(">H", len(encoded)) + encoded)
        for block in _member_blocks(content):
            sealer.write(b"B" + struct.pack(">I", len(block)))
            sealer.write(block)
        sealer.write(b"E")
    sealer.write(b"Z")


# -- reading -------------------------------------------------------------------


class _PlainReader:
    """Exact reads over the authenticated plaintext chunks."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks, self._buffer, self._position = chunks, b"", 0

    def read(self, size: int) -> bytes:
        while len(self._buffer) - self._position < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise BackupCorruptError("The backup's contents end early; the file is damaged.")
            self._buffer = self._buffer[self._position :] + chunk
            self._position = 0
        data = self._buffer[self._position : self._position + size]
        self._position += size
        return data

    def expect_end(self) -> None:
        if self._position < len(self._buffer) or next(self._chunks, None) is not None:
            raise BackupCorruptError("The backup has unexpected data after its contents.")


@dataclass(frozen=True)
class _Event:
    kind: Literal["start", "data", "end"]
    name: str
    data: bytes = b""


def _archive_events(plain: _PlainReader) -> Iterator[_Event]:
    """The members of the decrypted archive, checked for structure."""
    current: str | None = None
    names = _MemberNames()
    while (tag := plain.read(1)) != b"Z" or current is not None:
        if tag == b"M" and current is None:
            (length,) = struct.unpack(">H", plain.read(2))
            current = _decode_name(plain.read(length))
            if problem := names.admit(current):
                raise BackupCorruptError(problem)
            yield _Event("start", current)
        elif tag == b"B" and current is not None:
            (length,) = struct.unpack(">I", plain.read(4))
            if not 0 < length <= BLOCK_SIZE:
                raise BackupCorruptError("The backup's contents are damaged (block length).")
            yield _Event("data", current, plain.read(length))
        elif tag == b"E" and current is not None:
            yield _Event("end", current)
            current = None
        else:
            raise BackupCorruptError("The backup's contents are damaged (unknown record).")
    plain.expect_end()


def _decode_name(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BackupCorruptError("A member name in the backup is not valid UTF-8.") from exc


# -- extracting ----------------------------------------------------------------


def _write_member(root: Path, name: str, events: Iterator[_Event]) -> MemberInfo:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(path, "xb") as out:
        for event in events:
            if event.kind == "end":
                break
            size += out.write(event.data)
        out.flush()
        os.fsync(out.fileno())
    return MemberInfo(name, size)


def _write_events(events: Iterator[_Event], root: Path) -> tuple[MemberInfo, ...]:
    """Write each member; the event stream guarantees start, data..., end for each."""
    return tuple(_write_member(root, event.name, events) for event in events)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
