"""What the supervisor serves with: the listening sockets it owns, the live worker, the
candidate worker an install starts beside it, and what it is doing now.

The supervisor's control loop and its installer both work on this one object; the
installer changes which worker serves only through its methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bastion.platform import build
from bastion.platform.settings import ApplianceSettings
from bastion.supervisor.messages import (
    EndSession,
    HoldsSession,
    LiveSessions,
    Order,
    Retire,
    WatchTicket,
)
from bastion.supervisor.process import Inherited, settings_env
from bastion.supervisor.slots import BASE, Releases
from bastion.supervisor.state import InstallState
from bastion.supervisor.workers import Worker, WorkerError, spawn

log = logging.getLogger("bastion.supervisor")


@dataclass
class Retiring:
    """A worker an install replaced, keeping the remote sessions in progress at the switch."""

    worker: Worker
    ending: asyncio.Task[None]
    sessions: int
    until: str
    """UTC ISO time at which the sessions still kept end."""


class Serving:
    def __init__(self, settings: ApplianceSettings, inherited: Inherited | None = None) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.releases = Releases(self.data_dir)
        self.state = InstallState(self.data_dir)
        self.sockets: dict[str, socket.socket] = dict(inherited.sockets) if inherited else {}
        self.worker: Worker | None = inherited.worker if inherited else None
        self.candidate: Worker | None = None
        self.retiring: dict[int, Retiring] = {}
        """Workers an install replaced that keep their remote sessions until they end."""
        self.activity = ""
        """What an install is doing now, in words, for the status."""

    @property
    def base_slot(self) -> str:
        return self.releases.target(BASE) or f"base-{build.BASE_VERSION}"

    @property
    def base_version(self) -> str:
        return str(self.releases.manifest(self.base_slot).get("version", build.BASE_VERSION))

    def child_env(self) -> dict[str, str]:
        return {**settings_env(self.settings), "BASTION_BASE_VERSION": self.base_version}

    def lib_of(self, slot: str) -> Path | None:
        return self.releases.import_path(slot)

    def start_worker(self, slot: str, standby: bool, wait_for_begin: bool = False) -> Worker:
        worker = spawn(
            self.data_dir,
            slot,
            self.lib_of(slot),
            self.child_env(),
            standby=standby,
            wait_for_begin=wait_for_begin,
        )
        log.info("started worker %s from slot %s%s", worker.pid, slot, " (standby)" * standby)
        return worker

    def serve_from(self, slot: str) -> Worker:
        """Start a worker from `slot` that serves at once, in place of the live one."""
        self.worker = self.start_worker(slot, standby=False)
        return self.worker

    def start_candidate(self, slot: str) -> Worker:
        """An install's new worker: imported, in standby, waiting to be told to begin."""
        self.candidate = self.start_worker(slot, standby=True, wait_for_begin=True)
        return self.candidate

    def promote_candidate(self) -> Worker | None:
        """The candidate becomes the live worker; returns the worker it replaces."""
        old, self.worker, self.candidate = self.worker, self.candidate, None
        return old

    async def retire(self, old: Worker) -> int:
        """The worker an install replaced stops accepting and ends once the remote sessions
        it holds end, or after `install_session_keep_seconds`; the install goes on
        meanwhile. Returns the sessions it keeps. A worker that cannot retire (a version
        without the order) is stopped as before."""
        keep = self.settings.install_session_keep_seconds
        grace = self.settings.install_drain_seconds
        try:
            answer = await old.order(Retire(keep))
        except WorkerError as error:
            log.info("worker %s cannot keep its sessions (%s): stopping it", old.pid, error)
            await old.stop(grace)
            return 0
        kept = int(answer.get("kept", 0))
        if kept:
            log.warning("worker %s keeps %d session(s) for up to %.0f s", old.pid, kept, keep)
        until = datetime.now(UTC) + timedelta(seconds=keep)
        ending = asyncio.create_task(self._retired(old, keep + grace + 30))
        self.retiring[old.pid] = Retiring(old, ending, kept, until.isoformat(timespec="seconds"))
        return kept

    async def _retired(self, old: Worker, deadline: float) -> None:
        try:
            await asyncio.wait_for(old.wait(), deadline)
        except TimeoutError:
            log.error("worker %s did not end %.0f s after it retired: killed", old.pid, deadline)
            old.kill()
            await old.wait()
        finally:
            self.retiring.pop(old.pid, None)

    async def end_kept_session(self, session_id: str, reason: str) -> bool:
        """End a remote session a retiring worker keeps; False if none keeps it."""
        async for _old, answer in self._ask_retiring(EndSession(session_id, reason)):
            if answer.get("ended"):
                return True
        return False

    async def watch_kept_session(self, session_id: str) -> dict[str, Any]:
        """A ticket to watch a remote session a retiring worker keeps, with that worker's
        private socket (the live worker relays the watch); `refused` and why if it keeps
        the session but may not give one now; empty if none keeps it."""
        async for old, answer in self._ask_retiring(WatchTicket(session_id)):
            if answer.get("token"):
                return {"socket": old.socket, "token": str(answer["token"])}
            if answer.get("refused"):
                return {"refused": str(answer["refused"])}
        return {}

    async def find_kept_session(self, session_id: str) -> dict[str, Any]:
        """The private socket of the retiring worker that keeps this remote session (its
        console or Jump Client connected after the switch); empty if none does."""
        async for old, answer in self._ask_retiring(HoldsSession(session_id)):
            if answer.get("held"):
                return {"socket": old.socket}
        return {}

    async def kept_live_sessions(self) -> list[dict[str, Any]]:
        """The remote sessions the retiring workers keep, as each describes them."""
        found: list[dict[str, Any]] = []
        async for _old, answer in self._ask_retiring(LiveSessions()):
            found += [s for s in answer.get("sessions") or [] if isinstance(s, dict)]
        return found

    async def _ask_retiring(self, order: Order) -> AsyncIterator[tuple[Worker, dict[str, Any]]]:
        """Each retiring worker's answer to `order`; one that cannot answer is skipped."""
        for old in [r.worker for r in self.retiring.values()]:
            try:
                answer = await old.order(order)
            except WorkerError as error:
                log.warning("worker %s could not answer %s: %s", old.pid, order.path, error)
                continue
            yield old, answer

    async def stop_retiring(self) -> None:
        """End the workers still keeping sessions (the appliance stops, or re-executes)."""
        for retiring in list(self.retiring.values()):
            try:
                await retiring.worker.stop(self.settings.install_drain_seconds)
            except WorkerError:
                retiring.worker.kill()
            retiring.ending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retiring.ending
        self.retiring.clear()

    async def drop_candidate(self) -> None:
        if self.candidate is not None:
            self.candidate.kill()
            await self.candidate.wait()
            self.candidate = None
