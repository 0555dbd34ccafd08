"""What an appliance knows of its pair, under `state/`: the inter-appliance key (sealed
by this machine's key vault) and `failover.json` (its role, its peer and the last sync).

Both are this machine's, never the site's: a backup of the site does not carry them,
and the backup appliance's pull does not overwrite them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
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


def read_pair(state_dir: Path) -> Pair:
    path = state_dir / PAIR_FILE
    if not path.exists():
        return Pair()
    data = json.loads(path.read_text())
    peer = Peer(**data["peer"]) if data.get("peer") else None
    return Pair(
        Role(data.get("role", "none")),
        peer,
        data.get("established_at", ""),
        data.get("last_sync_time", ""),
        data.get("last_sync_status", ""),
        dict(data.get("details", {})),
    )


def write_pair(state_dir: Path, pair: Pair) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    data = asdict(pair)
    data["role"] = pair.role.value
    write_atomically(state_dir / PAIR_FILE, json.dumps(data, indent=2).encode())


def record_sync(state_dir: Path, at: str, status: str) -> Pair:
    pair = replace(read_pair(state_dir), last_sync_time=at, last_sync_status=status)
    write_pair(state_dir, pair)
    return pair
