"""A process whose wall clock is off, by libfaketime (Debian package `faketime`)."""

from __future__ import annotations

import shutil
import subprocess


def clock_off_env(offset: str) -> dict[str, str] | None:
    """The environment under which a process and its children see the time `offset` off
    (libfaketime's syntax, e.g. "+120s"), or None when `faketime` is not installed.

    It is what the `faketime` command sets before it runs a program: its library,
    preloaded, and FAKETIME. The library's path is asked of the installed command. The
    appliance's supervisor passes the environment on to its workers, which a command
    wrapped around `appliance serve` would not reach otherwise either.
    """
    command = shutil.which("faketime")
    if command is None:
        return None
    said = subprocess.run(
        [command, "-f", "+0s", "printenv", "LD_PRELOAD"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    library = said.stdout.strip()
    if said.returncode != 0 or not library:
        return None
    return {"LD_PRELOAD": library, "FAKETIME": offset}
