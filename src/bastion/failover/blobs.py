"""The blob store's side of a sync: what the primary holds, and fetching what the backup
lacks, by hash, verified, resumable after a cut (a part file grows until whole)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import httpx

HEX64 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024


class BlobMismatchError(Exception):
    """A fetched blob's bytes do not hash to its name."""


def listed(blobs_dir: Path) -> dict[str, int]:
    """Every whole blob: hash and size."""
    if not blobs_dir.is_dir():
        return {}
    return {p.name: p.stat().st_size for p in blobs_dir.iterdir() if HEX64.match(p.name)}


def missing(blobs_dir: Path, primary: dict[str, int]) -> list[str]:
    have = listed(blobs_dir)
    return sorted(sha for sha in primary if HEX64.match(sha) and sha not in have)


def part_path(partial_dir: Path, sha256: str) -> Path:
    return partial_dir / f"{sha256}.part"


def resume_from(partial_dir: Path, sha256: str) -> int:
    part = part_path(partial_dir, sha256)
    return part.stat().st_size if part.exists() else 0


def receive(response: httpx.Response, partial_dir: Path, sha256: str) -> Path:
    """Append the answer to the part file (a 206 continues it, a 200 starts it over) and
    verify the whole: the part file, whole and verified, not yet on disk for sure (see
    `settle`). The hash is taken as the bytes arrive (after the part's earlier bytes,
    when it continues), so the file is not read back."""
    partial_dir.mkdir(parents=True, exist_ok=True)
    part = part_path(partial_dir, sha256)
    digest = hashlib.sha256()
    mode = "ab" if response.status_code == 206 else "wb"
    if mode == "ab" and part.exists():
        _hash_into(digest, part)
    with part.open(mode) as out:
        for chunk in response.iter_bytes(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        part.unlink()
        raise BlobMismatchError(f"blob {sha256[:16]}… arrived damaged; it is fetched again")
    return part


def whole(partial_dir: Path, sha256: str) -> Path | None:
    """A part file that already holds the whole blob (fetched, not yet settled when a
    sync was cut), or None; a part as long as the blob but not it is deleted."""
    part = part_path(partial_dir, sha256)
    digest = hashlib.sha256()
    _hash_into(digest, part)
    if digest.hexdigest() == sha256:
        return part
    part.unlink()
    return None


def settle(part: Path, blobs_dir: Path, sha256: str) -> None:
    """A verified part file put on disk, then moved into the store: only then is the blob
    synced. Done apart from the fetch, so the next blob's bytes move meanwhile."""
    with part.open("rb") as written:
        os.fsync(written.fileno())
    blobs_dir.mkdir(parents=True, exist_ok=True)
    os.replace(part, blobs_dir / sha256)


def _hash_into(digest: Any, path: Path) -> None:
    with path.open("rb") as earlier:
        for chunk in iter(lambda: earlier.read(CHUNK), b""):
            digest.update(chunk)
