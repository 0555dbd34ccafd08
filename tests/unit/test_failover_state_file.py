"""The pair's state file: read again whenever it may have changed, parsed once otherwise."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bastion.failover import state
from bastion.failover.rules import Role
from bastion.failover.state import PAIR_FILE, Pair, read_pair, write_pair


def _age(path: Path, seconds: float) -> None:
    then = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(then, then))


def test_no_file_is_no_pair(tmp_path: Path) -> None:
    assert read_pair(tmp_path) == Pair()


def test_a_settled_file_is_parsed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_pair(tmp_path, Pair(Role.PRIMARY, last_sync_status="ok"))
    _age(tmp_path / PAIR_FILE, 5)
    first = read_pair(tmp_path)
    parsed: list[str] = []
    monkeypatch.setattr(state.json, "loads", lambda text: parsed.append(text))
    assert read_pair(tmp_path) is first
    assert parsed == []


def test_every_change_is_read_even_one_that_keeps_the_size_and_time(tmp_path: Path) -> None:
    write_pair(tmp_path, Pair(Role.PRIMARY, last_sync_status="ok"))
    assert read_pair(tmp_path).role is Role.PRIMARY
    write_pair(tmp_path, Pair(Role.BACKUP, last_sync_status="ok"))
    assert read_pair(tmp_path).role is Role.BACKUP

    # The same size, inode and time as the file that was read: only a file changed within
    # the last second can be that (a reused inode, a coarse clock), and it is read again.
    path = tmp_path / PAIR_FILE
    before = path.stat()
    assert read_pair(tmp_path).last_sync_status == "ok"
    text = path.read_text().replace('"ok"', '"no"')
    with path.open("w") as rewritten:
        rewritten.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert read_pair(tmp_path).last_sync_status == "no"


def test_a_file_read_while_fresh_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_pair(tmp_path, Pair(Role.PRIMARY, last_sync_status="ok"))
    path = tmp_path / PAIR_FILE
    before = path.stat()
    assert read_pair(tmp_path).last_sync_status == "ok"  # fresh: read, not kept
    text = path.read_text().replace('"ok"', '"no"')
    with path.open("w") as rewritten:  # a change that the file's size and time do not show
        rewritten.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    later = time.time_ns() + 2_000_000_000
    monkeypatch.setattr(state.time, "time_ns", lambda: later)  # now the file is settled
    assert read_pair(tmp_path) == replace(Pair(Role.PRIMARY), last_sync_status="no")
