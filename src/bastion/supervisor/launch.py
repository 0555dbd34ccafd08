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

from bastion.platform import build
from bastion.platform.settings import ApplianceSettings
from bastion.supervisor.core import Supervisor
from bastion.supervisor.process import Inherited, exec_supervisor
from bastion.supervisor.slots import BASE, CURRENT, Releases

log = logging.getLogger("bastion.supervisor")
FACTORY_BASE = f"base-{build.BASE_VERSION}"


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
        wanted = releases.target(BASE) or FACTORY_BASE
        running = os.environ.get("BASTION_BASE_SLOT", FACTORY_BASE)
        if wanted != running:
            exec_supervisor(settings, releases, wanted, {LOCK_ENV: str(_held[0])})
    return asyncio.run(Supervisor(settings, inherited).run())
