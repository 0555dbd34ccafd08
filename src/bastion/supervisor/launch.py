"""What `bastion appliance serve` runs: recover, pick the base slot, supervise.

This code ships with the appliance and changes only with it, so it is the
fixed point every start goes through: it finishes or undoes an install the
last run stopped in, then runs the supervisor of the `base` slot, re-executing
itself from that slot's code when it is not the installed one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from bastion import release
from bastion.adapters.slots import BASE, CURRENT, Releases
from bastion.settings import ApplianceSettings
from bastion.supervisor.core import Inherited, Supervisor, settings_env

log = logging.getLogger("bastion.supervisor")
FACTORY_BASE = f"base-{release.BASE_VERSION}"


def prepare(settings: ApplianceSettings) -> Releases:
    """On the first start, the code installed with the appliance becomes the first slots."""
    releases = Releases(settings.data_dir.resolve())
    if releases.target(CURRENT) is None:
        releases.point(CURRENT, releases.ensure_factory("site", release.site_version()))
    if releases.target(BASE) is None:
        releases.point(BASE, releases.ensure_factory("base", release.BASE_VERSION))
    return releases


def main(settings: ApplianceSettings) -> int:
    inherited = Inherited.from_env()
    if inherited is None:
        from bastion.supervisor.installer import recover

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        releases = prepare(settings)
        reason = recover(settings)
        if reason is not None:
            log.warning("the last install was interrupted: %s", reason)
        wanted = releases.target(BASE) or FACTORY_BASE
        running = os.environ.get("BASTION_BASE_SLOT", FACTORY_BASE)
        if wanted != running:
            _exec_base(settings, releases, wanted)
    return asyncio.run(Supervisor(settings, inherited).run())


def _exec_base(settings: ApplianceSettings, releases: Releases, slot: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if not releases.manifest(slot).get("factory", False):
        env["PYTHONPATH"] = str(releases.lib(slot))
    env.update(settings_env(settings))
    env["BASTION_BASE_SLOT"] = slot
    log.info("starting the supervisor from %s", slot)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "bastion.supervisor"], env)
