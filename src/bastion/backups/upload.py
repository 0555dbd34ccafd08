"""The size cap on backup uploads: copy a stream, refusing it once it grows past a limit."""

from __future__ import annotations

from typing import BinaryIO

from bastion.backups.container import DEFAULT_CHUNK_SIZE
from bastion.backups.rules import BackupError


class BackupTooLargeError(BackupError):
    """The upload is longer than the accepted size."""


class SizeCappedReader:
    """Wraps a stream; raises :class:`BackupTooLargeError` once more than ``limit`` bytes come."""

    def __init__(self, stream: BinaryIO, limit: int):
        self._stream, self._limit, self.consumed = stream, limit, 0

    def read(self, size: int = -1) -> bytes:
        allowed = self._limit - self.consumed + 1
        data = self._stream.read(allowed if size is None or size < 0 else min(size, allowed))
        self.consumed += len(data)
        if self.consumed > self._limit:
            raise BackupTooLargeError(
                f"The upload is larger than the limit of {self._limit} bytes; it was refused."
                " Check that this is a Bastion backup, or raise the upload limit."
            )
        return data


def copy_capped(source: BinaryIO, target: BinaryIO, limit: int) -> int:
    """Copy at most ``limit`` bytes in blocks; refuse (without reading further) beyond that."""
    capped = SizeCappedReader(source, limit)
    while block := capped.read(DEFAULT_CHUNK_SIZE):
        target.write(block)
    return capped.consumed
