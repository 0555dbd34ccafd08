"""`python -m bastion.entrypoints.worker`: what the supervisor runs from a site slot.

- `serve`: the application, on sockets the supervisor hands over;
- `migrate`: bring the database to this release's schema (an install step).

A worker ends with its supervisor: the kernel kills it when the supervisor
dies (PR_SET_PDEATHSIG), so a restarted appliance finds its ports free.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from bastion.platform.console import output_console
from bastion.platform.event_loop import run_event_loop
from bastion.platform.logs import configure_logging
from bastion.platform.settings import ApplianceSettings
from bastion.supervisor.workers import BEGIN_ENV

PR_SET_PDEATHSIG = 1


def _die_with_supervisor() -> None:
    supervisor = int(os.environ.get("BASTION_SUPERVISOR_PID", "0") or 0)
    if not supervisor:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor:  # it died before the line above took effect
        sys.exit(3)


def _wait_for_begin() -> None:
    """Started early by an install: imported and ready, wait until told to touch the data.

    The supervisor starts the new release's processes before it pauses changes on the
    running one, so the pause lasts the snapshot and the migrations, not Python's imports.
    """
    ready = os.environ.get(BEGIN_ENV)
    if not ready:
        return
    try:
        os.write(int(ready), b"ready\n")  # the supervisor pauses changes only now
    except BrokenPipeError:
        sys.exit(3)  # the install was called off while this process was starting
    os.close(int(ready))
    if sys.stdin.readline().strip() != "begin":
        sys.exit(3)  # the install was called off


def main() -> int:
    _die_with_supervisor()
    configure_logging()
    settings = ApplianceSettings()
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if command == "migrate":
        from bastion.platform.db.engine import make_engine, migrate, prepare_migrations

        prepare_migrations()
        engine = make_engine(settings.sqlalchemy_url())  # connects only when used
        _wait_for_begin()
        migrate(engine)
        engine.dispose()
        print("database migrated", flush=True)
        os._exit(0)  # at once: the install waits for this exit, and changes are paused
    if command != "serve":
        print(f"unknown worker command {command!r}: expected serve or migrate", file=sys.stderr)
        return 2
    from bastion.entrypoints import serving as appliance
    from bastion.supervisor.client import SupervisorClient

    prepared = appliance.prepare(settings)
    _wait_for_begin()

    supervised = appliance.Supervised(
        SupervisorClient(settings.data_dir),
        os.environ["BASTION_WORKER_SOCKET"],
        os.environ["BASTION_WORKER_TOKEN"],
        standby=bool(os.environ.get("BASTION_WORKER_STANDBY")),
    )
    try:
        run_event_loop(appliance.serve(prepared, output_console(), supervised))
    except appliance.StartupError as error:
        output_console().print(f"[red]Cannot start:[/] {error}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
