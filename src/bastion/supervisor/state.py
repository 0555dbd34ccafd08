"""The install state under `<data-dir>/state/install/`: journal, pending request, history.

The supervisor writes these files (each replaced atomically); workers and
console commands read them to show progress, the banner and past results.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bastion.platform.files import write_atomically
from bastion.supervisor.journal import HistoryEntry, Journal
from bastion.supervisor.messages import MessageError, PendingInstall

HISTORY_KEPT = 50


class InstallState:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "state" / "install"

    @property
    def journal_file(self) -> Path:
        return self.root / "journal.json"

    @property
    def pending_file(self) -> Path:
        return self.root / "pending.json"

    @property
    def history_file(self) -> Path:
        return self.root / "history.json"

    def work_dir(self, install_id: str) -> Path:
        """Where one install keeps its database snapshot until it is over."""
        return self.root / install_id

    def journal(self) -> Journal | None:
        body = self._read(self.journal_file)
        return Journal.from_dict(body) if isinstance(body, dict) else None

    def save_journal(self, journal: Journal) -> None:
        self._write(self.journal_file, journal.to_dict())

    def clear_journal(self, journal: Journal) -> None:
        self.journal_file.unlink(missing_ok=True)
        shutil.rmtree(self.work_dir(journal.install_id), ignore_errors=True)

    def pending(self) -> PendingInstall | None:
        body = self._read(self.pending_file)
        if not isinstance(body, dict):
            return None
        try:
            return PendingInstall.from_wire(body)
        except MessageError:
            return None

    def save_pending(self, pending: PendingInstall | None) -> None:
        if pending is None:
            self.pending_file.unlink(missing_ok=True)
        else:
            self._write(self.pending_file, pending.to_wire())

    def history(self) -> list[HistoryEntry]:
        body = self._read(self.history_file)
        if not isinstance(body, list):
            return []
        found = []
        for item in body:
            try:
                found.append(HistoryEntry.from_dict(item))
            except (KeyError, TypeError, ValueError):
                continue
        return found

    def record(self, entry: HistoryEntry) -> None:
        entries = [*self.history(), entry][-HISTORY_KEPT:]
        self._write(self.history_file, [e.to_dict() for e in entries])

    def _read(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _write(self, path: Path, body: Any) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(body, indent=2).encode(), 0o600)
