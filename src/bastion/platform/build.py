"""What this build of Bastion is: site version, base version and build id."""

from __future__ import annotations

import hashlib
import os
import platform
from functools import cache
from importlib import metadata
from pathlib import Path

PACKAGE = "bastion"
BASE_VERSION = "1.0.0"
"""Version of the base layer: the supervisor and the platform it runs on."""


@cache
def site_version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "0+unknown"


@cache
def build_id() -> str:
    """A short digest of the package's own files: two builds with equal ids run the same code."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def base_version() -> str:
    """The base this process runs on: the supervisor says which; else the installed one."""
    return os.environ.get("BASTION_BASE_VERSION") or BASE_VERSION


def base_description(version: str | None = None) -> str:
    return f"{version or base_version()} (Python {platform.python_version()})"
