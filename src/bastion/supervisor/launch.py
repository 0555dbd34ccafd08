"""What `bastion appliance serve` runs: recover, pick the base slot, supervise.

This code ships with the appliance and changes only with it, so it is the
fixed point every start goes through: it finishes or undoes an install the
last run stopped in, then runs the supervisor of the `base` slot, re-executing
itself from that slot's code when it is not the installed one.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import time
from pathlib import Path

from bastion.platform import build
from bastion.platform.settings import ApplianceSettings
from bastion.supervisor.core import Supervisor
from bastion.supervisor.process import Inherited, exec_supervisor
from bastion.supervisor.slots import BASE, CURRENT, Releases

log = logging.getLogger("bastion.supervisor")
FACTORY_BASE = f"base-{build.BASE_VERSION}"
SCRATCH_KEPT_SECONDS = 3600.0
"""Scratch entries nothing wrote to for this long are what an earlier run left."""


def prepare(settings: ApplianceSettings) -> Releases:
    """On the first start, the code installed with the appliance becomes the first slots."""
    releases = Releases(settings.data_dir.resolve())
    if releases.target(CURRENT) is None:
        releases.point(CURRENT, releases.ensure_factory("site", build.site_version()))
    if releases.target(BASE) is None:
        releases.point(BASE, releases.ensure_factory("base", build.BASE_VERSION))
    return releases


_held: list[int] = []
LOCK_ENV = "BASTION_SUPERVISOR_LOCK_FD"


def _lock(settings: ApplianceSettings) -> bool:
    """One appliance per data directory, held until the process ends (across re-execs).

    Taken before anything else: a second start must not "recover" an install that the
    running appliance is in the middle of.
    """
    if os.environ.get(LOCK_ENV):  # this process took it before re-executing itself
        return True
    path = settings.data_dir / "state" / "supervisor.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    os.set_inheritable(fd, True)  # a base install re-executes this process: keep the lock
    _held.append(fd)
    return True


def main(settings: ApplianceSettings) -> int:
    inherited = Inherited.from_env()
    if inherited is None:
        from bastion.supervisor.installer import recover

        if not _lock(settings):
            log.error(
                "another appliance already runs on %s; stop it first, or give another --data",
                settings.data_dir.resolve(),
            )
            return 2
        releases = prepare(settings)
        reason = recover(settings)
        if reason is not None:
            log.warning("the last install was interrupted: %s", reason)
        entries, size = sweep_scratch(settings.scratch_dir)
        if entries:
            log.warning(
                "removed %d leftover item(s) of an earlier run from %s (%.1f MiB)",
                entries,
                settings.scratch_dir,
                size / 2**20,
            )
        wanted = releases.target(BASE) or FACTORY_BASE
        running = os.environ.get("BASTION_BASE_SLOT", FACTORY_BASE)
        if wanted != running:
            exec_supervisor(settings, releases, wanted, {LOCK_ENV: str(_held[0])})
    return asyncio.run(Supervisor(settings, inherited).run())


def sweep_scratch(
    directory: Path, kept_seconds: float = SCRATCH_KEPT_SECONDS, now: float | None = None
) -> tuple[int, int]:
    """Remove what a crash left in the scratch directory (a backup being restored, an
    upload being received): each entry nothing has written to for `kept_seconds`. A
    console command working beside the appliance keeps its own entry fresh. Returns how
    many entries went and their size in bytes."""
    moment = time.time() if now is None else now
    entries = size = 0
    try:
        found = list(directory.iterdir())
    except OSError:  # none yet, or not readable: nothing to do at this start
        return 0, 0
    for entry in found:
        try:
            newest, bytes_in = _newest_write(entry)
            if moment - newest < kept_seconds:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:  # gone meanwhile, or not ours to remove: the start goes on
            continue
        entries, size = entries + 1, size + bytes_in
    return entries, size


def _newest_write(entry: Path) -> tuple[float, int]:
    """The latest modification time under `entry` (itself included) and its size."""
    status = entry.lstat()
    newest, size = status.st_mtime, status.st_size
    if entry.is_dir() and not entry.is_symlink():
        for root, directories, files in os.walk(entry):
            for name in [*directories, *files]:
                try:
                    inner = (Path(root) / name).lstat()
                except FileNotFoundError:
                    continue
                newest, size = max(newest, inner.st_mtime), size + inner.st_size
    return newest, size
