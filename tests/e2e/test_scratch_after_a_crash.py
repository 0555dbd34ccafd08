"""An appliance that starts again removes the scratch files a crash left behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support.appliance import start_appliance

HOST = "127.0.0.242"


def test_a_restore_a_crash_left_in_the_scratch_directory_is_removed_at_the_next_start(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with start_appliance(tmp_path, host=HOST, data_dir=data):
        pass
    left = data / "tmp" / "restore-left"
    left.mkdir(parents=True)
    (left / "site.sqlite").write_bytes(b"\0" * 2**20)
    two_hours_ago = time.time() - 7200
    for path in (left / "site.sqlite", left):
        os.utime(path, (two_hours_ago, two_hours_ago))
    fresh = data / "tmp" / "upload-in-progress.part"
    fresh.write_bytes(b"still being written")

    with start_appliance(tmp_path, host=HOST, data_dir=data) as appliance:
        assert not left.exists() and fresh.exists()
        log = appliance.log_path.read_text()
    assert "removed 1 leftover item(s) of an earlier run from" in log and "(1.0 MiB)" in log
