"""A restore killed at any moment leaves the site as it was before, or as in the backup."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.test_backup_restore import PASSPHRASE, backup_bytes, make_site

ROWS = 30_000


def fill(database: Path, prefix: str) -> None:
    with sqlite3.connect(database) as connection:
        connection.executemany(
            "INSERT INTO audit_log (at, actor, action, target, details, source)"
            " VALUES ('2026-01-01 00:00:00', ?, 'test', 't', '{}', '127.0.0.1')",
            ((f"{prefix}{i}",) for i in range(ROWS)),
        )


def actors(database: Path) -> set[str]:
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = connection.execute(
            "SELECT DISTINCT substr(actor, 1, 4) FROM audit_log WHERE action = 'test'"
        )
        return {row[0] for row in rows}


def test_killing_a_restore_at_any_moment_loses_nothing(tmp_path: Path) -> None:
    source = make_site(tmp_path / "source")
    fill(tmp_path / "source" / "db" / "bastion.sqlite", "new-")
    backup = tmp_path / "site.bastion"
    backup.write_bytes(backup_bytes(source))
    target = make_site(tmp_path / "target")
    database = tmp_path / "target" / "db" / "bastion.sqlite"
    fill(database, "old-")
    target.engine.dispose()
    env = {**os.environ, "BASTION_BACKUP_PASSPHRASE": PASSPHRASE}
    command = [
        sys.executable,
        "-m",
        "bastion",
        "backup",
        "restore",
        str(backup),
        "--data",
        str(tmp_path / "target"),
    ]
    outcomes = set()
    for step in range(80):  # kill ever later, 0.1 s apart, until a restore completes
        delay = 0.3 + step * 0.1
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        state = actors(database)
        assert state in ({"old-"}, {"new-"}), state
        outcomes.add(frozenset(state))
        if state == {"new-"}:
            break
    assert outcomes, "the restore never ran"
