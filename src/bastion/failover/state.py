"""What an appliance knows of its pair, under `state/`: the inter-appliance key (sealed
by this machine's key vault) and `failover.json` (its role, its peer and the last sync).

Both are this machine's, never the site's: a backup of the site does not carry them,
and the backup appliance's pull does not overwrite them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from bastion.failover.rules import PeerAddress, Role
from bastion.platform.files import write_atomically

KEY_FILE = "inter-appliance-key.sealed"
PAIR_FILE = "failover.json"
SEAL_BINDING = "bastion-inter-appliance-key"

Transform = Callable[[bytes, str], bytes]


@dataclass(frozen=True)
class KeyStore:
    state_dir: Path
    seal: Transform
    unseal: Transform

    @property
    def path(self) -> Path:
        return self.state_dir / KEY_FILE

    def store(self, key: str) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, self.seal(key.encode(), SEAL_BINDING))

    def read(self) -> bytes | None:
        if not self.path.exists():
            return None
        return self.unseal(self.path.read_bytes(), SEAL_BINDING)


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    fingerprint: str
    """SHA-256 of the certificate the peer served when the pair was established."""

    @property
    def address(self) -> PeerAddress:
        return PeerAddress(self.host, self.port)


@dataclass(frozen=True)
class Pair:
    role: Role = Role.NONE
    peer: Peer | None = None
    established_at: str = ""
    last_sync_time: str = ""
    last_sync_status: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    role_since: str = ""
    """When this appliance last changed role within the pair (a swap); empty: since it was
    established."""


def read_pair(state_dir: Path) -> Pair:
    """The pair's state as the file holds it now.

    Read on every health check and many requests, so a file that has not changed since
    the last read is not parsed again. It is only replaced whole, by a rename; but an inode
    can be reused and a file's time is coarse, so a file changed within the last second
    is read every time and kept only once it is older (as git treats a "racily clean"
    index entry)."""
    path = _pair_file(state_dir)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return Pair()
    seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    known = _read.get(path)
    settled = time.time_ns() - stat.st_mtime_ns > _SETTLED_NS
    if known is not None and known[0] == seen and settled:
        return known[1]
    data = json.loads(path.read_text())
    peer = Peer(**data["peer"]) if data.get("peer") else None
    pair = Pair(
        Role(data.get("role", "none")),
        peer,
        data.get("established_at", ""),
        data.get("last_sync_time", ""),
        data.get("last_sync_status", ""),
        dict(data.get("details", {})),
        data.get("role_since", ""),
    )
    if settled:  # kept only once no change can share its time
        _read[path] = (seen, pair)
    return pair


@cache
def _pair_file(state_dir: Path) -> Path:
    return state_dir / PAIR_FILE


_read: dict[Path, tuple[tuple[int, int, int], Pair]] = {}
_SETTLED_NS = 1_000_000_000


def write_pair(state_dir: Path, pair: Pair) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    data = asdict(pair)
    data["role"] = pair.role.value
    write_atomically(state_dir / PAIR_FILE, json.dumps(data, indent=2).encode())


def record_sync(state_dir: Path, at: str, status: str) -> Pair:
    pair = replace(read_pair(state_dir), last_sync_time=at, last_sync_status=status)
    write_pair(state_dir, pair)
    return pair


# -- the peer's status, as the periodic check sees it ------------------------------------

STATUS_FILE = "failover-status.json"
HISTORY_LENGTH = 50


@dataclass(frozen=True)
class PeerStatus:
    """The last check of the peer: when, what it said (`ok`, `unreachable`, `split brain`,
    `refused`), its role, and the changes of status before it (newest first)."""

    checked_at: str = ""
    status: str = ""
    peer_role: str = ""
    message: str = ""
    history: list[dict[str, str]] = field(default_factory=list)


def read_status(state_dir: Path) -> PeerStatus:
    path = state_dir / STATUS_FILE
    if not path.exists():
        return PeerStatus()
    data = json.loads(path.read_text())
    return PeerStatus(
        str(data.get("checked_at", "")),
        str(data.get("status", "")),
        str(data.get("peer_role", "")),
        str(data.get("message", "")),
        [dict(entry) for entry in data.get("history", [])],
    )


def record_status(
    state_dir: Path, at: str, status: str, peer_role: str, message: str
) -> PeerStatus:
    """The check's outcome; a change of status (or of the peer's role) starts a new entry
    of the history, a check like the last one only moves its time."""
    last = read_status(state_dir)
    history = list(last.history)
    if status != last.status or peer_role != last.peer_role or not history:
        entry = {"since": at, "status": status, "peer_role": peer_role, "message": message}
        history = [entry, *history][:HISTORY_LENGTH]
    checked = PeerStatus(at, status, peer_role, message, history)
    state_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(state_dir / STATUS_FILE, json.dumps(asdict(checked), indent=2).encode())
    return checked


def forget_status(state_dir: Path) -> None:
    (state_dir / STATUS_FILE).unlink(missing_ok=True)
