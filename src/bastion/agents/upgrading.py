"""A Jump Client upgrading itself: fetch the site's build, check it, install it beside the
running one, restart into it, and go back by itself if the new build cannot reach the site.

    <state>/builds/<version>/lib    an installed build (the site's `bastion` wheel)
    <state>/build.json              the build the client runs (absent: the installed one)
    <state>/upgrade.json            an upgrade on trial: the new build, the old, the deadline
    <state>/upgrade-failed.json     why the last upgrade was undone, until the site hears it

The build comes over the client's own authenticated TLS connection: its SHA-256 and size
in the upgrade order, its bytes after it (`bastion.agents.build_download`). Nothing is
switched until the whole build is checked and installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, Protocol

from bastion.agents.errors import UpgradeError
from bastion.agents.installation import INSTALLATION, PENDING
from bastion.agents.protocol import Upgrade
from bastion.platform.files import write_atomically
from bastion.releases.wheels import WheelError, install_wheel

BUILDS = "builds"
ACTIVE = "build.json"
TRIAL = "upgrade.json"
FAILED = "upgrade-failed.json"
BUILD_ENV = "BASTION_JUMP_CLIENT_BUILD"
DEADLINE_ENV = "BASTION_JUMP_CLIENT_UPGRADE_DEADLINE"
DEFAULT_DEADLINE = 120.0


@dataclass(frozen=True)
class Trial:
    """An upgrade on trial: back to `previous` if the new build is not welcomed by then."""

    command_id: str
    version: str
    lib: str
    previous: str
    """The lib the old build ran from ("": the installed one)."""
    deadline: float


def deadline_seconds() -> float:
    return float(os.environ.get(DEADLINE_ENV) or DEFAULT_DEADLINE)


def running_lib() -> str:
    return os.environ.get(BUILD_ENV, "")


class BuildSource(Protocol):
    """Where the build comes from: the client's connection (`JumpClient.fetch_build`)."""

    async def fetch_build(self, command_id: str, order: Upgrade, sink: BinaryIO) -> None: ...


async def fetch(source: BuildSource, state: Path, command_id: str, order: Upgrade) -> Path:
    """Receive and check the build, install it under `builds/<version>/lib`; its lib."""
    builds = state / BUILDS
    builds.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=builds, prefix=".fetch-"))
    try:
        wheel = work / f"bastion-{order.version}-py3-none-any.whl"
        with wheel.open("wb") as sink:
            await source.fetch_build(command_id, order, sink)
        return await asyncio.to_thread(_install, wheel, work / "lib", builds / order.version)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install(wheel: Path, lib: Path, target: Path) -> Path:
    try:
        install_wheel(wheel, lib)
    except WheelError as error:
        raise UpgradeError(f"the build does not install: {error}") from None
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    os.rename(lib, target / "lib")
    return target / "lib"


def begin(state: Path, command_id: str, version: str, lib: Path) -> Trial:
    trial = Trial(command_id, version, str(lib), running_lib(), time.time() + deadline_seconds())
    write_atomically(state / TRIAL, json.dumps(asdict(trial)).encode())
    return trial


def trial(state: Path) -> Trial | None:
    body = _read(state / TRIAL)
    return Trial(**body) if body else None


def confirm(state: Path, current: Trial) -> None:
    """The new build reached the site: it is the build from now on; older ones go."""
    write_atomically(
        state / ACTIVE, json.dumps({"version": current.version, "lib": current.lib}).encode()
    )
    (state / TRIAL).unlink(missing_ok=True)
    for build in (state / BUILDS).iterdir():
        if build.name != current.version and not build.name.startswith("."):
            shutil.rmtree(build, ignore_errors=True)


def revert(state: Path, current: Trial, reason: str) -> str:
    """Undo the trial: the reason is kept for the site; the lib to run again."""
    failure = {"command_id": current.command_id, "version": current.version, "reason": reason}
    write_atomically(state / FAILED, json.dumps(failure).encode())
    (state / TRIAL).unlink(missing_ok=True)
    shutil.rmtree(state / BUILDS / current.version, ignore_errors=True)
    return current.previous


def failure(state: Path) -> dict[str, Any] | None:
    return _read(state / FAILED)


def heard(state: Path) -> None:
    (state / FAILED).unlink(missing_ok=True)


def reset(state: Path) -> None:
    """A new installation replaced this one: it runs the build installed with it, and
    the builds the old one upgraded to go."""
    for name in (ACTIVE, TRIAL, FAILED):
        (state / name).unlink(missing_ok=True)
    shutil.rmtree(state / BUILDS, ignore_errors=True)


def wanted_lib(state: Path) -> str:
    """The lib this client should run from: a build on trial (undone once its deadline
    has passed, say after the new build crashed), else the confirmed one."""
    current = trial(state)
    if current is not None and time.time() > current.deadline:
        return revert(state, current, "the new build did not reach the site in time")
    if current is not None:
        return current.lib
    active = _read(state / ACTIVE)
    return str(active["lib"]) if active and Path(str(active["lib"])).is_dir() else ""


def run_from(lib: str, state: Path) -> NoReturn:
    """Replace this process with the Jump Client running from `lib` ("": the installed)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", BUILD_ENV)}
    if lib:
        env["PYTHONPATH"], env[BUILD_ENV] = lib, lib
    installed = _read(state / INSTALLATION) or _read(state / PENDING) or {}
    agent = "jumpoint" if installed.get("kind") == "jumpoint" else "jump-client"
    command = [sys.executable, "-m", "bastion", agent, "run", "--dir", str(state)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None
