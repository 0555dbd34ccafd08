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
import logging
import os
import signal
import time
from datetime import UTC, datetime
from typing import Any

from bastion.platform.settings import ApplianceSettings
from bastion.supervisor import control_socket as control
from bastion.supervisor import installer, messages
from bastion.supervisor.journal import InstallError, progress, rolled_back
from bastion.supervisor.process import Inherited, now
from bastion.supervisor.serving import Serving
from bastion.supervisor.slots import BASE, CURRENT, PREVIOUS
from bastion.supervisor.sockets import ListenError, bind, parse_listen_address
from bastion.supervisor.workers import WorkerError

log = logging.getLogger("bastion.supervisor")
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


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


class Supervisor:
    def __init__(self, settings: ApplianceSettings, inherited: Inherited | None = None) -> None:
        self.settings = settings
        self.site = Serving(settings, inherited)
        self.data_dir = self.site.data_dir
        self.inherited = inherited
        self.stopping = asyncio.Event()
        self.exit_code = 0
        self.installing: asyncio.Task[None] | None = None
        self.restarts = 0

    # The control socket.

    async def handle(self, message: dict[str, Any]) -> control.Reply:
        request = messages.request_from_wire(message)
        if isinstance(request, messages.Listen):
            return self._listen(request.address)
        if isinstance(request, messages.Unlisten):
            sock = self.site.sockets.pop(str(parse_listen_address(request.address)), None)
            if sock is not None:
                sock.close()
            return {"ok": True}, []
        if isinstance(request, messages.Install):
            return {"ok": True, **self._request_install(request).to_wire()}, []
        if isinstance(request, messages.Cancel):
            return {"ok": True, "cancelled": self._cancel()}, []
        if isinstance(request, messages.Status):
            return {"ok": True, **self.status().to_wire()}, []
        if isinstance(request, messages.ServeCertificate):
            return {"ok": True, "served": await self._serve_certificate()}, []
        if isinstance(request, messages.EndKeptSession):
            ended = await self.site.end_kept_session(request.session_id, request.reason)
            return {"ok": True, "ended": ended}, []
        if isinstance(request, messages.FindKeptSession):
            return {"ok": True, **await self.site.find_kept_session(request.session_id)}, []
        if isinstance(request, messages.KeptLiveSessions):
            return {"ok": True, "sessions": await self.site.kept_live_sessions()}, []
        if isinstance(request, messages.WatchKeptSession):
            return {"ok": True, **await self.site.watch_kept_session(request.session_id)}, []
        log.info("shut down requested")
        self.stopping.set()
        return {"ok": True}, []

    def _listen(self, text: str) -> control.Reply:
        address = parse_listen_address(text)
        key = str(address)
        if key not in self.site.sockets:
            try:
                self.site.sockets[key] = bind(address)
            except ListenError as error:
                return {"ok": False, "error": str(error)}, []
        return {"ok": True, "address": key}, [self.site.sockets[key].fileno()]

    def _request_install(self, request: messages.Install) -> messages.PendingInstall:
        self._reap()  # an install that ended is no longer running, as `status` says
        if self.installing is not None or self.site.state.journal() is not None:
            raise InstallError("An install is running; wait for it to finish.")
        if self.site.state.pending() is not None:
            raise InstallError(
                "An install is already scheduled; cancel it first to schedule another."
            )
        if not request.releases:
            raise InstallError("Name at least one downloaded release to install.")
        for planned in request.releases:
            if not os.path.isfile(planned.package):
                raise InstallError(f"The package of {planned.name} is not on this appliance.")
        pending = messages.PendingInstall(
            install_id=datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}",
            releases=request.releases,
            not_before=_utc(request.not_before) or now(),
            requested_by=request.requested_by,
            requested_at=now(),
            estimate_seconds=request.estimate_seconds,
        )
        self.site.state.save_pending(pending)
        log.info("install %s scheduled for %s", pending.install_id, pending.not_before)
        return pending

    def _cancel(self) -> bool:
        if self.site.state.pending() is None:
            return False
        self.site.state.save_pending(None)
        return True

    async def _serve_certificate(self) -> bool:
        worker = self.site.worker
        if worker is None or worker.poll() is not None:
            return False
        answer = await worker.order(messages.ServeDefaultCertificate())
        return bool(answer.get("served"))

    def status(self) -> messages.SupervisorStatus:
        journal = self.site.state.journal()
        history = self.site.state.history()
        pending = self.site.state.pending()
        state = "scheduled" if pending is not None else "idle"
        if self.installing is not None and not self.installing.done():
            state = "installing"
        running = None
        if journal is not None:
            state = "rolling back" if journal.rollback else "installing"
            running = messages.InstallProgress(journal, *progress(journal))
        return messages.SupervisorStatus(
            state=state,
            base_version=self.site.base_version,
            activity=self.site.activity,
            pending=pending,
            progress=running,
            history=tuple(history[-10:]),
            rolled_back=tuple(sorted(rolled_back(history))),
            links={link: self.site.releases.target(link) for link in (CURRENT, PREVIOUS, BASE)},
            workers={
                **{
                    role: {"pid": worker.pid, "slot": worker.slot}
                    for role, worker in (
                        ("live", self.site.worker),
                        ("candidate", self.site.candidate),
                    )
                    if worker is not None and worker.poll() is None
                },
                **{
                    f"retiring {pid}": {
                        "pid": pid,
                        "slot": kept.worker.slot,
                        "sessions": kept.sessions,
                        "until": kept.until,
                    }
                    for pid, kept in self.site.retiring.items()
                    if kept.sessions and kept.worker.poll() is None
                },
            },
        )

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
        try:
            if self.inherited is not None:
                queued = await installer.resume_after_exec(self.site)
                if queued is not None:
                    self.installing = asyncio.create_task(installer.install(self.site, *queued))
            if self.site.worker is None:
                self.site.worker = self.site.start_worker(
                    self.site.releases.target(CURRENT) or "", False
                )
            while not self.stopping.is_set():
                await self._tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 0.2)
        finally:
            server.cancel()
            if self.installing is not None:
                self.installing.cancel()
            await self._stop_workers()
        return self.exit_code

    def _reap(self) -> None:
        """Forget the install task once it has ended (an unexpected failure is logged)."""
        if self.installing is not None and self.installing.done():
            task, self.installing = self.installing, None
            if not task.cancelled() and task.exception() is not None:
                # Never retried in a loop: a journal left behind is recovered at the next start.
                log.error("the install stopped unexpectedly", exc_info=task.exception())
                self.site.state.save_pending(None)

    async def _tick(self) -> None:
        self._reap()
        if self.installing is None:
            pending = self.site.state.pending()
            if pending is not None and pending.not_before <= now():
                self.installing = asyncio.create_task(installer.run_pending(self.site, pending))
                return
            if self.site.worker is not None and self.site.worker.poll() is not None:
                await self._worker_died()

    async def _worker_died(self) -> None:
        worker = self.site.worker
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
            self.site.worker = self.site.start_worker(
                self.site.releases.target(CURRENT) or "", False
            )

    async def _stop_workers(self) -> None:
        await self.site.stop_retiring()
        for worker in (self.site.candidate, self.site.worker):
            if worker is not None:
                try:
                    await worker.stop()
                except WorkerError:
                    worker.kill()
