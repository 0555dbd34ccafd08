"""`python -m bastion.supervisor`: the supervisor re-executed from a base slot.

`--probe` only checks that this base's code imports and runs, for an install
that tries a new base before switching to it.
"""

from __future__ import annotations

import sys

from bastion.platform import build
from bastion.platform.logs import configure_logging
from bastion.platform.settings import ApplianceSettings


def run() -> int:
    if "--probe" in sys.argv[1:]:
        from bastion.supervisor import core, installer, launch  # noqa: F401  (they must import)

        print(f"bastion base {build.base_version()} supervisor ok")
        return 0
    configure_logging()
    from bastion.supervisor import launch

    return launch.main(ApplianceSettings())


if __name__ == "__main__":
    sys.exit(run())
