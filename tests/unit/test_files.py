from __future__ import annotations

import stat
from pathlib import Path

from bastion.platform.files import create_once, write_atomically


def test_an_atomic_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "state.json"
    write_atomically(target, b"first")
    write_atomically(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_secrets_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    write_atomically(tmp_path / "secret", b"x")
    write_atomically(tmp_path / "public", b"x", mode=0o644)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "public").stat().st_mode) == 0o644


def test_create_once_never_overwrites(tmp_path: Path) -> None:
    key = tmp_path / "master.key"
    assert create_once(key, b"first")
    assert not create_once(key, b"second")
    assert key.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]
