"""Large uploads and downloads: bounded before they reach the disk, deleted after use."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import FileResponse

from bastion.platform.errors import InvalidInputError


class UploadTooLargeError(InvalidInputError):
    pass


def too_large(limit: int) -> UploadTooLargeError:
    return UploadTooLargeError(
        f"The upload is larger than {limit // (1024 * 1024)} MiB, more than any backup of this "
        "site could be; it was refused and nothing was stored. Check that you chose the right "
        "file, or raise BASTION_BACKUP_UPLOAD_LIMIT_BYTES."
    )


def check_declared_length(request: Request, limit: int) -> None:
    """Refuse at once when the client announces too much, or announces nothing."""
    declared = request.headers.get("content-length")
    if declared is None:
        raise InvalidInputError("Send the upload with a Content-Length header.")
    if not declared.isdigit() or int(declared) > limit:
        raise too_large(limit)


@asynccontextmanager
async def spooled_body(request: Request, scratch: Path, limit: int) -> AsyncIterator[BinaryIO]:
    """The raw request body in a temporary file, read in blocks and cut off past `limit`."""
    check_declared_length(request, limit)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=scratch) as spool:
        received = 0
        async for block in request.stream():
            received += len(block)
            if received > limit:
                raise too_large(limit)
            spool.write(block)
        spool.seek(0)
        yield spool


def temporary_download(scratch: Path, suffix: str) -> Path:
    scratch.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=scratch, suffix=suffix)
    os.close(handle)
    return Path(name)


def file_download(path: Path, filename: str) -> FileResponse:
    """Send `path` as an attachment and delete it once sent."""
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=filename,
        background=BackgroundTask(path.unlink, missing_ok=True),
    )
