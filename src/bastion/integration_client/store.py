"""The directory the integration client fills, and its state file.

    DIR/reports/<session id>.json     one session report each, as the site wrote it
    DIR/recordings/<session id>.cast  its recording (asciicast v2), when it has one
    DIR/backups/<site>-<UTC time>.bastion  a backup of the site (with a passphrase file)
    DIR/state.json                    what is complete: per session, the SHA-256 of both

A file under a final name is whole and verified: everything is written to a temporary
name (`.NAME.part`) in the same directory, fsynced, then renamed; the state file is
replaced the same way after each session. Temporary files left by a killed pass are
removed by the next one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bastion.platform.files import write_atomically

STATE = "state.json"
PART = ".part"


@dataclass(frozen=True)
class Saved:
    """A session saved whole: its report's SHA-256 and its recording's (None: none)."""

    report_sha256: str
    recording_sha256: str | None


@dataclass
class Store:
    root: Path
    saved: dict[str, Saved] = field(default_factory=dict)

    @classmethod
    def open(cls, root: Path) -> Store:
        for folder in (root, root / "reports", root / "recordings", root / "backups"):
            folder.mkdir(parents=True, exist_ok=True)
        for leftover in root.rglob(f".*{PART}"):
            leftover.unlink(missing_ok=True)
        return cls(root, _read_state(root / STATE))

    def report_path(self, session_id: str) -> Path:
        return self.root / "reports" / f"{session_id}.json"

    def recording_path(self, session_id: str) -> Path:
        return self.root / "recordings" / f"{session_id}.cast"

    def intact(self, session_id: str) -> bool:
        """Saved, and both files still match their digests."""
        saved = self.saved.get(session_id)
        if saved is None:
            return False
        if sha256_of(self.report_path(session_id)) != saved.report_sha256:
            return False
        wanted = saved.recording_sha256
        return wanted is None or sha256_of(self.recording_path(session_id)) == wanted

    def backup_path(self, site: str, stamp: str) -> Path:
        return self.root / "backups" / f"{site}-{stamp}.bastion"

    def prune_backups(self, keep: int) -> list[Path]:
        """Remove all but the newest `keep` backups (names sort by time); those removed."""
        kept = sorted((self.root / "backups").glob("*.bastion"), key=lambda p: p.stat().st_mtime)
        gone = kept[: max(0, len(kept) - keep)]
        for path in gone:
            path.unlink(missing_ok=True)
        return gone

    @contextmanager
    def temporary(self, final: Path) -> Iterator[Path]:
        """A temporary name beside `final`, removed unless it was renamed to `final`."""
        temp = final.with_name(f".{final.name}{PART}")
        try:
            yield temp
        finally:
            temp.unlink(missing_ok=True)

    def keep(self, temp: Path, final: Path) -> None:
        with temp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(temp, final)

    def save_report(self, session_id: str, raw: dict[str, object]) -> str:
        data = json.dumps(raw, indent=2, sort_keys=True).encode() + b"\n"
        write_atomically(self.report_path(session_id), data, 0o640)
        return hashlib.sha256(data).hexdigest()

    def mark_saved(self, session_id: str, saved: Saved) -> None:
        self.saved[session_id] = saved
        body = {"version": 1, "saved": {k: v.__dict__ for k, v in sorted(self.saved.items())}}
        write_atomically(self.root / STATE, json.dumps(body, indent=1).encode(), 0o640)


def sha256_of(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 16), b""):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def _read_state(path: Path) -> dict[str, Saved]:
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}  # a state that cannot be read: everything is checked and fetched again
    entries = body.get("saved", {}) if isinstance(body, dict) else {}
    try:
        return {k: Saved(**v) for k, v in entries.items()}
    except TypeError:
        return {}
