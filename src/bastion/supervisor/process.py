"""The supervisor as a process: the environment its children get, re-executing itself from
another base slot, and what it keeps across that (its sockets and its worker)."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

from bastion.platform.settings import ApplianceSettings
from bastion.supervisor.slots import Releases
from bastion.supervisor.workers import Worker

log = logging.getLogger("bastion.supervisor")
INHERIT_ENV = "BASTION_SUPERVISOR_INHERIT"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def settings_env(settings: ApplianceSettings) -> dict[str, str]:
    """The settings given on the command line, as the environment of child processes."""
    env = {
        "BASTION_DATA_DIR": str(settings.data_dir.resolve()),
        "BASTION_LISTEN": json.dumps(settings.listen),
        "BASTION_HOSTNAME": settings.hostname,
    }
    if settings.database_url is not None:
        env["BASTION_DATABASE_URL"] = settings.database_url.get_secret_value()
    return env


def exec_supervisor(
    settings: ApplianceSettings, releases: Releases, slot: str, extra: dict[str, str]
) -> NoReturn:
    """Replace this process with the supervisor of base slot `slot` (same pid, same fds)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    lib = releases.import_path(slot)
    if lib is not None:
        env["PYTHONPATH"] = str(lib)
    env.update(settings_env(settings))
    env["BASTION_BASE_SLOT"] = slot
    env.update(extra)
    log.warning("running the supervisor of %s", slot)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "bastion.supervisor"], env)


@dataclass(frozen=True)
class Inherited:
    """What a supervisor keeps across re-executing itself: sockets and its worker."""

    sockets: dict[str, socket.socket]
    worker: Worker | None

    @classmethod
    def from_env(cls) -> Inherited | None:
        text = os.environ.pop(INHERIT_ENV, "")
        if not text:
            return None
        body = json.loads(text)
        sockets = {
            address: socket.socket(fileno=int(fd)) for address, fd in body["sockets"].items()
        }
        worker = Worker.adopt(body["worker"]) if body.get("worker") else None
        return cls(sockets, worker)
