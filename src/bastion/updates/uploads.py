"""Offline update bundles arriving over HTTP: size-capped, kept in a named file while verified."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from fastapi import Request

from bastion.platform.web.uploads import UploadTooLargeError, check_declared_length


def bundle_too_large(limit: int) -> UploadTooLargeError:
    return UploadTooLargeError(
        f"The upload is larger than {limit // (1024 * 1024)} MiB, the limit for update bundles; "
        "it was refused and nothing was stored. Check that you chose the bundle the update "
        "service gave for this appliance, or raise BASTION_UPDATE_UPLOAD_LIMIT_BYTES."
    )


def check_bundle_length(request: Request, limit: int) -> None:
    """Refuse before reading when the declared length is missing or over the limit."""
    try:
        check_declared_length(request, limit)
    except UploadTooLargeError:
        raise bundle_too_large(limit) from None


@contextmanager
def bundle_file(scratch: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """A named file for the bundle in the scratch directory, deleted afterwards."""
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=scratch, prefix="bundle-", suffix=".tar") as out:
        yield Path(out.name), out


async def copy_stream(blocks: AsyncIterable[bytes], out: IO[bytes], limit: int) -> None:
    received = 0
    async for block in blocks:
        received += len(block)
        if received > limit:
            raise bundle_too_large(limit)
        out.write(block)
    out.flush()


def copy_file(source: BinaryIO, out: IO[bytes], limit: int) -> None:
    shutil.copyfileobj(source, out, 1 << 20)
    out.flush()
    if out.tell() > limit:
        raise bundle_too_large(limit)
