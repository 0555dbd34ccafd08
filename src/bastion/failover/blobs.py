"""The blob store's side of a sync: what the primary holds, and fetching what the backup
lacks, by hash, verified, resumable after a cut (a part file grows until whole)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

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


def receive(response: httpx.Response, partial_dir: Path, blobs_dir: Path, sha256: str) -> None:
    """Append the answer to the part file (a 206 continues it, a 200 starts it over), then
    verify the whole and move it into the store. The hash is taken as the bytes arrive
    (after the part's earlier bytes, when it continues), so the file is not read back."""
    partial_dir.mkdir(parents=True, exist_ok=True)
    part = part_path(partial_dir, sha256)
    digest = hashlib.sha256()
    mode = "ab" if response.status_code == 206 else "wb"
    if mode == "ab" and part.exists():
        with part.open("rb") as earlier:
            for chunk in iter(lambda: earlier.read(CHUNK), b""):
                digest.update(chunk)
    with part.open(mode) as out:
        for chunk in response.iter_bytes(CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != sha256:
        part.unlink()
        raise BlobMismatchError(f"blob {sha256[:16]}… arrived damaged; it is fetched again")
    blobs_dir.mkdir(parents=True, exist_ok=True)
    os.replace(part, blobs_dir / sha256)
