"""The supervisor: owns the listening sockets, runs the worker, carries out installs.

It is the base layer. It starts the worker from the `current` site slot and
restarts it if it dies, hands listening sockets to workers on request (so a new
worker serves on the very sockets the old one does), and answers the control
socket: install, cancel, status, shut down. Installs themselves are in
`bastion.supervisor.installer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from bastion import release
from bastion.adapters import control_socket as control
from bastion.adapters.install_state import InstallState
from bastion.adapters.slots import BASE, CURRENT, PREVIOUS, Releases
from bastion.adapters.sockets import bind
from bastion.domain.install import InstallError, PlannedRelease, progress, rolled_back
from bastion.domain.network import parse_listen_address
from bastion.services.ports import ListenError
from bastion.settings import ApplianceSettings
from bastion.supervisor.workers import Worker, WorkerError, spawn

log = logging.getLogger("bastion.supervisor")
INHERIT_ENV = "BASTION_SUPERVISOR_INHERIT"
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


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


def _utc(text: Any) -> str | None:
    """An ISO time as UTC text, so that scheduled times compare as strings."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        raise InstallError(f"{text!r} is not an ISO date and time") from None
    if moment.tzinfo is None:
        raise InstallError(f"{text!r} has no time zone; give it in UTC")
    return moment.astimezone(UTC).isoformat(timespec="seconds")


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


class Supervisor:
    def __init__(self, settings: ApplianceSettings, inherited: Inherited | None = None) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.releases = Releases(self.data_dir)
        self.state = InstallState(self.data_dir)
        self.inherited = inherited
        self.sockets: dict[str, socket.socket] = dict(inherited.sockets) if inherited else {}
        self.worker: Worker | None = inherited.worker if inherited else None
        self.candidate: Worker | None = None
        self.stopping = asyncio.Event()
        self.exit_code = 0
        self.installing: asyncio.Task[None] | None = None
        self.activity = ""
        self.restarts = 0

    # What the supervisor runs.

    @property
    def base_slot(self) -> str:
        return self.releases.target(BASE) or f"base-{release.BASE_VERSION}"

    @property
    def base_version(self) -> str:
        return str(self.releases.manifest(self.base_slot).get("version", release.BASE_VERSION))

    def child_env(self) -> dict[str, str]:
        return {**settings_env(self.settings), "BASTION_BASE_VERSION": self.base_version}

    def lib_of(self, slot: str) -> Path | None:
        return self.releases.import_path(slot)

    def start_worker(self, slot: str, standby: bool, wait_for_begin: bool = False) -> Worker:
        env = self.child_env()
        worker = spawn(
            self.data_dir,
            slot,
            self.lib_of(slot),
            env,
            standby=standby,
            wait_for_begin=wait_for_begin,
        )
        log.info("started worker %s from slot %s%s", worker.pid, slot, " (standby)" * standby)
        return worker

    # The control socket.

    async def handle(self, message: dict[str, Any]) -> control.Reply:
        op = message.get("op")
        if op == "listen":
            return self._listen(str(message["address"]))
        if op == "unlisten":
            sock = self.sockets.pop(str(parse_listen_address(str(message["address"]))), None)
            if sock is not None:
                sock.close()
            return {"ok": True}, []
        if op == "install":
            return {"ok": True, **self._request_install(message)}, []
        if op == "cancel":
            return {"ok": True, "cancelled": self._cancel()}, []
        if op == "status":
            return {"ok": True, **self.status()}, []
        if op == "shutdown":
            log.info("shut down requested")
            self.stopping.set()
            return {"ok": True}, []
        return {"ok": False, "error": f"unknown request {op!r}"}, []

    def _listen(self, text: str) -> control.Reply:
        address = parse_listen_address(text)
        key = str(address)
        if key not in self.sockets:
            try:
                self.sockets[key] = bind(address)
            except ListenError as error:
                return {"ok": False, "error": str(error)}, []
        return {"ok": True, "address": key}, [self.sockets[key].fileno()]

    def _request_install(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.installing is not None or self.state.journal() is not None:
            raise InstallError("An install is running; wait for it to finish.")
        if self.state.pending() is not None:
            raise InstallError(
                "An install is already scheduled; cancel it first to schedule another."
            )
        releases = [PlannedRelease.from_dict(r) for r in message.get("releases", [])]
        if not releases:
            raise InstallError("Name at least one downloaded release to install.")
        for planned in releases:
            if not os.path.isfile(planned.package):
                raise InstallError(f"The package of {planned.name} is not on this appliance.")
        install_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
        pending = {
            "install_id": install_id,
            "releases": [r.to_dict() for r in releases],
            "not_before": _utc(message.get("not_before")) or now(),
            "requested_by": str(message.get("requested_by", "")),
            "requested_at": now(),
            "estimate_seconds": float(message.get("estimate_seconds", 0)),
        }
        self.state.save_pending(pending)
        log.info("install %s scheduled for %s", install_id, pending["not_before"])
        return {"install_id": install_id, "not_before": pending["not_before"]}

    def _cancel(self) -> bool:
        if self.state.pending() is None:
            return False
        self.state.save_pending(None)
        return True

    def status(self) -> dict[str, Any]:
        journal = self.state.journal()
        history = self.state.history()
        body: dict[str, Any] = {
            "state": "idle",
            "pending": self.state.pending(),
            "activity": self.activity,
            "links": {link: self.releases.target(link) for link in (CURRENT, PREVIOUS, BASE)},
            "base_version": self.base_version,
            "history": [e.to_dict() for e in history[-10:]],
            "rolled_back": sorted(rolled_back(history)),
            "workers": {
                role: {"pid": worker.pid, "slot": worker.slot}
                for role, worker in (("live", self.worker), ("candidate", self.candidate))
                if worker is not None and worker.poll() is None
            },
        }
        if body["pending"] is not None:
            body["state"] = "scheduled"
        if self.installing is not None and not self.installing.done():
            body["state"] = "installing"
        if journal is not None:
            done, total = progress(journal)
            body["state"] = "rolling back" if journal.rollback else "installing"
            body["journal"] = {**journal.to_dict(), "done": done, "total": total}
        return body

    # Running.

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        try:
            server = await control.serve(control.socket_name(self.data_dir), self.handle)
        except OSError:
            log.error(
                "another appliance already runs on %s; stop it first, or give another --data",
                self.data_dir,
            )
            return 2
        from bastion.supervisor import installer

        try:
            if self.inherited is not None:
                await installer.resume_after_exec(self)
            if self.worker is None:
                self.worker = self.start_worker(self.releases.target(CURRENT) or "", False)
            while not self.stopping.is_set():
                await self._tick(installer)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 0.2)
        finally:
            server.cancel()
            if self.installing is not None:
                self.installing.cancel()
            await self._stop_workers()
        return self.exit_code

    async def _tick(self, installer: Any) -> None:
        if self.installing is not None and self.installing.done():
            task, self.installing = self.installing, None
            if not task.cancelled() and task.exception() is not None:
                # Never retried in a loop: a journal left behind is recovered at the next start.
                log.error("the install stopped unexpectedly", exc_info=task.exception())
                self.state.save_pending(None)
        if self.installing is None:
            pending = self.state.pending()
            if pending is not None and pending.get("not_before", "") <= now():
                self.installing = asyncio.create_task(installer.run_pending(self, pending))
                return
            if self.worker is not None and self.worker.poll() is not None:
                await self._worker_died()

    async def _worker_died(self) -> None:
        worker = self.worker
        assert worker is not None
        if self.stopping.is_set():
            return
        if worker.exit_code == 2:
            log.error("the worker cannot start (see above); stopping")
            self.exit_code = 2
            self.stopping.set()
            return
        delay = RESTART_DELAYS[min(self.restarts, len(RESTART_DELAYS) - 1)]
        log.error(
            "worker %s exited with %s; restarting in %.0f s", worker.pid, worker.exit_code, delay
        )
        self.restarts = self.restarts + 1 if time.monotonic() - worker.started < 60 else 0
        await asyncio.sleep(delay)
        if not self.stopping.is_set():
            self.worker = self.start_worker(self.releases.target(CURRENT) or "", False)

    async def _stop_workers(self) -> None:
        for worker in (self.candidate, self.worker):
            if worker is not None:
                try:
                    await worker.stop()
                except WorkerError:
                    worker.kill()
