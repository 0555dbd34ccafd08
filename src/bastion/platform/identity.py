"""`state/appliance.json`: the appliance's id, when it was created and the site it serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bastion.platform.files import write_atomically

IDENTITY_FILE = "appliance.json"


def read(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / IDENTITY_FILE
    return dict(json.loads(path.read_text())) if path.exists() else None


def write(state_dir: Path, identity: dict[str, Any]) -> None:
    """Replace the file atomically: a reader sees the old or the new identity, never half."""
    write_atomically(state_dir / IDENTITY_FILE, json.dumps(identity, indent=2).encode())


def stored_hostname(state_dir: Path) -> str | None:
    """The site hostname the appliance last served, if it ever ran."""
    stored = read(state_dir) or {}
    hostname = stored.get("hostname")
    return str(hostname) if hostname else None
