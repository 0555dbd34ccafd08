"""The backup's side of fetching a blob: a part file that grows until whole, verified by
its hash as the bytes arrive, and only then settled (on disk, moved into the store);
a part left whole by a cut sync is taken as it is, one that is not the blob is not."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from bastion.failover import blobs

BLOB = os.urandom(3 * blobs.CHUNK + 123)
SHA = hashlib.sha256(BLOB).hexdigest()


def test_a_blob_is_verified_then_settled_into_the_store(tmp_path: Path) -> None:
    partial, store = tmp_path / "partial", tmp_path / "store"
    part = blobs.receive(httpx.Response(200, content=BLOB), partial, SHA)
    assert part.read_bytes() == BLOB and blobs.listed(store) == {}
    blobs.settle(part, store, SHA)
    assert blobs.listed(store) == {SHA: len(BLOB)} and not part.exists()


def test_a_cut_fetch_continues_where_its_part_file_ends(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    half = len(BLOB) // 2
    blobs.part_path(partial, SHA).write_bytes(BLOB[:half])
    assert blobs.resume_from(partial, SHA) == half
    part = blobs.receive(httpx.Response(206, content=BLOB[half:]), partial, SHA)
    assert part.read_bytes() == BLOB


def test_a_damaged_blob_leaves_no_part_behind(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    damaged = BLOB[:-1] + bytes([BLOB[-1] ^ 1])
    with pytest.raises(blobs.BlobMismatchError, match="arrived damaged"):
        blobs.receive(httpx.Response(200, content=damaged), partial, SHA)
    assert not blobs.part_path(partial, SHA).exists()


def test_a_whole_part_left_by_a_cut_sync_is_taken_and_a_wrong_one_dropped(
    tmp_path: Path,
) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    part = blobs.part_path(partial, SHA)
    part.write_bytes(BLOB)
    assert blobs.whole(partial, SHA) == part
    part.write_bytes(bytes(len(BLOB)))  # as long as the blob, but not it
    assert blobs.whole(partial, SHA) is None and not part.exists()
