"""What a crash leaves in the data directory's scratch directory goes at the next start."""

from __future__ import annotations

import os
from pathlib import Path

from bastion.supervisor.launch import SCRATCH_KEPT_SECONDS, sweep_scratch

NOW = 2_000_000_000.0
OLD = NOW - SCRATCH_KEPT_SECONDS - 60
RECENT = NOW - 60


def written(path: Path, at: float, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (at, at))
    return path


def aged(directory: Path, at: float) -> Path:
    os.utime(directory, (at, at))
    return directory


def test_entries_nothing_wrote_to_for_an_hour_go_and_fresh_ones_stay(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    written(scratch / "restore-left" / "site.sqlite", OLD, 1000)
    aged(scratch / "restore-left", OLD)
    written(scratch / "upload-left.part", OLD, 24)
    written(scratch / "restore-running" / "site.sqlite", RECENT)
    aged(scratch / "restore-running", OLD)  # its file is still being written
    written(scratch / "upload-running.part", RECENT)
    aged(scratch, OLD)

    entries, size = sweep_scratch(scratch, now=NOW)
    assert entries == 2 and size >= 1000 + 24
    assert sorted(p.name for p in scratch.iterdir()) == ["restore-running", "upload-running.part"]


def test_no_scratch_directory_is_nothing_to_do(tmp_path: Path) -> None:
    assert sweep_scratch(tmp_path / "tmp", now=NOW) == (0, 0)


def test_a_scratch_path_that_is_no_directory_leaves_the_start_alone(tmp_path: Path) -> None:
    written(tmp_path / "tmp", OLD)
    assert sweep_scratch(tmp_path / "tmp", now=NOW) == (0, 0)
    assert (tmp_path / "tmp").is_file()
