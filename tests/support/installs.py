"""Put release packages where a downloaded one waits, and follow installs on the supervisor."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bastion.releases.packages import PackageInfo, build_package
from bastion.releases.versions import ReleaseKind, parse_requirement, parse_version
from bastion.supervisor.client import SupervisorClient
from bastion.supervisor.journal import PlannedRelease
from bastion.supervisor.messages import Install


def store_release(
    data_dir: Path,
    kind: str,
    version: str,
    wheel: Path,
    requires: Sequence[str] = (),
    site: str = "localhost",
) -> dict[str, Any]:
    """A package as the update client leaves it once downloaded and verified."""
    info = PackageInfo(
        ReleaseKind(kind),
        parse_version(version),
        tuple(parse_requirement(r) for r in requires),
        site if kind != "base" else None,
    )
    built = build_package(info, [wheel], data_dir.parent / "packages" / kind / version)
    digest = hashlib.sha256(built.read_bytes()).hexdigest()
    stored = data_dir / "blobs" / "sha256" / digest
    stored.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built, stored)
    return {"kind": kind, "version": version, "package": str(stored), "requires": list(requires)}


def request_install(data_dir: Path, *releases: dict[str, Any]) -> dict[str, Any]:
    planned = tuple(PlannedRelease.from_dict(r) for r in releases)
    return SupervisorClient(data_dir).install(Install(planned, requested_by="test")).to_wire()


def wait_idle(data_dir: Path, timeout: float = 120) -> dict[str, Any]:
    """The supervisor's status once no install is scheduled or running."""
    client = SupervisorClient(data_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = client.status().to_wire()
        except Exception:  # re-executing from a new base: the socket is back in a moment
            time.sleep(0.2)
            continue
        if status["state"] == "idle":
            return status
        time.sleep(0.2)
    raise AssertionError(f"the install did not finish within {timeout} s")


def wait_step(data_dir: Path, step: str, timeout: float = 120) -> None:
    """Wait until the install journal records `step` (an install paused after it)."""
    journal = data_dir / "state" / "install" / "journal.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if f'"step": "{step}"' in journal.read_text():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the install never recorded step {step!r}")


def wait_installed(api: httpx.Client, timeout: float = 240) -> dict[str, Any]:
    """The install status from the appliance's API once it is idle again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = api.get("/api/v1/updates/install")
        if answer.status_code == 200 and answer.json()["state"] == "idle":
            return dict(answer.json())
        time.sleep(0.3)
    raise AssertionError("the install did not finish")
