"""The installed Jump Client as a service: it keeps in touch with its site until stopped,
carries out what the site asks (check in, sessions, upgrade, uninstall), and takes
`bastion jump-client check-in` from the endpoint on a Unix socket in its state directory
(owner only).

An upgrade never cuts a session: with sessions in progress, the new build is fetched (over
the client's connection) and checked at once, new sessions are refused, and the restart
waits until the last one ends.

A client installed from an installer for a later site version (R11) first waits: it asks
the site to register it every few minutes (at once on `check-in`), stays offline while
the site runs an earlier version, and runs as any client once registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from bastion.agents import upgrading
from bastion.agents.connection import Endpoint
from bastion.agents.errors import AgentError, UpgradeError
from bastion.agents.identity import load_or_create
from bastion.agents.installation import (
    ANCHORS,
    IDENTITY,
    Installation,
    NotYetError,
    SiteUnreachableError,
    load,
    register_pending,
    uninstall,
    waiting,
)
from bastion.agents.jump_client import AGENT_VERSION, JumpClient, JumpClientConfig, Observer
from bastion.agents.protocol import (
    AnySessionOrder,
    Command,
    CommandResult,
    Mode,
    RetryAfter,
    Statistics,
    Upgrade,
    Welcome,
)
from bastion.agents.statistics import collect
from bastion.agents.trust import anchor_fingerprints, anchors_context

log = logging.getLogger("bastion.jump_client")
CONTROL = "control.sock"
UNINSTALL_GRACE = 1.0
WAIT_ENV = "BASTION_JUMP_CLIENT_WAIT_SECONDS"
DEFAULT_WAIT = 300.0
"""How often a client waiting for its site version asks the site (jittered by a fifth)."""


def control_path(state: Path) -> Path:
    return state / CONTROL


def _config(
    installed: Installation, state: Path, wake_port: int, sessions: bool
) -> JumpClientConfig:
    host = installed.gateway_host
    endpoint = Endpoint(
        site=installed.site,
        port=installed.gateway_port,
        address=None if host == installed.site else host,
    )
    mode: Mode = "passive" if installed.mode == "passive" else "active"
    return JumpClientConfig(
        endpoint=endpoint,
        mode=mode,
        anchors=anchor_fingerprints(state / ANCHORS),
        wake_address=("0.0.0.0", wake_port) if mode == "passive" else None,
        sessions=sessions,
        jumpoint=installed.kind == "jumpoint",
    )


async def _statistics() -> Statistics:
    return await asyncio.to_thread(collect)


class LoggingObserver(Observer):
    """What the service says in its log: connected, refused and why, lost, failures; and
    the first welcome of a build on trial confirms it."""

    def __init__(self, on_welcome: Callable[[], None]) -> None:
        self.on_welcome = on_welcome

    def welcomed(self, welcome: Welcome) -> None:
        log.info("connected to the site (%s)", welcome.mode)
        self.on_welcome()

    def refused(self, answer: RetryAfter) -> None:
        detail = f": {answer.detail}" if answer.detail else ""
        log.warning(
            "the site refused: %s%s; trying again in %.0f s", answer.reason, detail, answer.seconds
        )

    def failed(self, error: AgentError) -> None:
        log.warning("cannot reach the site: %s", error)

    def lost(self, reason: str) -> None:
        log.info("the connection to the site ended: %s", reason)

    def checked_in(self) -> None:
        log.info("checked in with the site")

    def commanded(self, command: Command, result: CommandResult) -> None:
        if result.outcome != "done":
            log.warning("%s: %s (%s)", command.body.kind, result.outcome, result.detail)

    def session_started(self, order: AnySessionOrder) -> None:
        log.info("session %s started (%dx%d)", order.session_id, order.cols, order.rows)

    def session_ended(self, session_id: str, how: str) -> None:
        log.info("session %s: %s", session_id, how)


class Service:
    """One installed Jump Client, running."""

    def __init__(self, state: Path, wake_port: int = 0, sessions: bool = True) -> None:
        self.state = state
        self.installed = load(state)
        self.client = JumpClient(
            _config(self.installed, state, wake_port, sessions),
            load_or_create(state / IDENTITY),
            anchors_context(state / ANCHORS),
            _statistics,
            commands=self.command,
            observer=LoggingObserver(self._welcomed),
        )
        self.stop = asyncio.Event()
        self.restart_into: str | None = None
        """Set when the service ends to run another build (an upgrade, or its undoing)."""
        self._deferred: asyncio.Task[None] | None = None

    async def command(self, command: Command) -> CommandResult:
        if isinstance(command.body, Upgrade):
            return await self._upgrade(command.command_id, command.body)
        if command.body.kind == "uninstall":
            log.warning("the site asks this Jump Client to uninstall itself")
            asyncio.get_running_loop().call_later(UNINSTALL_GRACE, self._uninstall)
            return CommandResult(
                command_id=command.command_id, outcome="done", detail="uninstalled"
            )
        return await self.client.builtin_command(command)

    async def _upgrade(self, command_id: str, order: Upgrade) -> CommandResult:
        if order.version == AGENT_VERSION:
            return CommandResult(command_id=command_id, outcome="done", detail="already running it")
        log.warning("upgrading to %s", order.version)
        try:
            lib = await upgrading.fetch(self.client, self.state, command_id, order)
        except UpgradeError as error:
            log.error("the upgrade to %s failed: %s", order.version, error)
            return CommandResult(command_id=command_id, outcome="failed", detail=str(error)[:500])
        sessions = self.client.sessions_in_progress
        if sessions:
            if self._deferred is not None:  # a newer order replaces one still waiting
                self._deferred.cancel()
            waiting = self._upgrade_after_sessions(command_id, order, lib)
            self._deferred = asyncio.create_task(waiting, name="upgrade after sessions")
            detail = f"restarting into {order.version} once its {sessions} session(s) end"
            return CommandResult(command_id=command_id, outcome="done", detail=detail)
        upgrading.begin(self.state, command_id, order.version, lib)
        asyncio.get_running_loop().call_later(UNINSTALL_GRACE, self._restart, str(lib))
        detail = f"restarting into {order.version}"
        return CommandResult(command_id=command_id, outcome="done", detail=detail)

    async def _upgrade_after_sessions(self, command_id: str, order: Upgrade, lib: Path) -> None:
        """Refuse new sessions, wait for those in progress, then restart into the new build
        (its trial deadline counts from the restart, not from the order)."""
        self.client.sessions.refused = (
            f"this Jump Client is upgrading to {order.version}; try again in a minute"
        )
        log.warning("upgrading to %s once the sessions in progress end", order.version)
        await self.client.sessions.ended()
        upgrading.begin(self.state, command_id, order.version, lib)
        self._restart(str(lib))

    def _restart(self, lib: str) -> None:
        self.restart_into = lib
        self.stop.set()

    def _welcomed(self) -> None:
        current = upgrading.trial(self.state)
        if current is not None and current.lib == upgrading.running_lib():
            upgrading.confirm(self.state, current)
            log.info("running %s: the upgrade is confirmed", current.version)
        failed = upgrading.failure(self.state)
        if failed is not None:
            result = CommandResult(
                command_id=str(failed["command_id"]),
                outcome="failed",
                detail=f"{failed['version']} was undone: {failed['reason']}"[:500],
            )
            if self.client.send(result):
                upgrading.heard(self.state)

    async def _watch_trial(self) -> None:
        """A build on trial that is not welcomed in time is undone by the client itself."""
        current = upgrading.trial(self.state)
        if current is None or current.lib != upgrading.running_lib():
            return
        await asyncio.sleep(max(0.0, current.deadline - time.time()))
        if upgrading.trial(self.state) is not None:
            reason = "the new build did not reach the site in time"
            log.error("%s (%s): going back", reason, current.version)
            self._restart(upgrading.revert(self.state, current, reason))

    def _uninstall(self) -> None:
        uninstall(self.state)
        self.stop.set()

    async def run(self) -> None:
        control = await asyncio.start_unix_server(self._control, path=str(control_path(self.state)))
        os.chmod(control_path(self.state), 0o600)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        running = asyncio.create_task(self.client.run(), name="jump client")
        watching = asyncio.create_task(self._watch_trial(), name="upgrade trial")
        log.info("Jump Client %s of %s started", self.installed.client_id, self.installed.site)
        await self.stop.wait()
        running.cancel()
        watching.cancel()
        if self._deferred is not None:
            self._deferred.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        control.close()
        control_path(self.state).unlink(missing_ok=True)

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(reader, writer, check_in=self._check_in, stop=self._replaced)

    def _check_in(self) -> str:
        self.client.wake()
        return "ok"

    def _replaced(self) -> str:  # a new installation: its service manager starts it again
        log.warning("replaced by a new installation: stopping")
        self.stop.set()
        return "ok"


class Waiter:
    """An installation waiting for its site version (R11): registers once the site runs
    it. `refused` says why the site refused it for good (a revoked or expired installer)."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.installer = waiting(state) or {}
        self.stop = asyncio.Event()
        self._ask = asyncio.Event()
        self.installed: Installation | None = None
        self.refused: str | None = None

    async def run(self) -> None:
        control = await asyncio.start_unix_server(self._control, path=str(control_path(self.state)))
        os.chmod(control_path(self.state), 0o600)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        try:
            await self._until_registered()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            control.close()
            control_path(self.state).unlink(missing_ok=True)

    async def _until_registered(self) -> None:
        every = float(os.environ.get(WAIT_ENV) or DEFAULT_WAIT)
        said = ""
        while not self.stop.is_set():
            try:
                self.installed = await asyncio.to_thread(
                    register_pending, self.state, AGENT_VERSION
                )
            except (NotYetError, SiteUnreachableError) as error:
                if str(error) != said:
                    log.warning("waiting: %s", error)
                    said = str(error)
            except AgentError as error:
                self.refused = str(error)
                log.error("%s", error)
                return
            else:
                log.info("registered as %s: connecting", self.installed.client_id)
                return
            self._ask.clear()
            pause = every * random.uniform(0.8, 1.2)
            asked, stopped = (
                asyncio.ensure_future(self._ask.wait()),
                asyncio.ensure_future(self.stop.wait()),
            )
            await asyncio.wait({asked, stopped}, timeout=pause, return_when="FIRST_COMPLETED")
            asked.cancel()
            stopped.cancel()

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(reader, writer, check_in=self._check_in, stop=self._stopped)

    def _check_in(self) -> str:
        self._ask.set()
        version = self.installer.get("site_version", "")
        return f"Asking the site; this client waits for it to run {version}."

    def _stopped(self) -> str:
        self.stop.set()
        return "ok"


async def answer(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    check_in: Callable[[], str],
    stop: Callable[[], str],
) -> None:
    """One request on the control socket (`check-in` or `stop`), answered in a line."""
    line = (await reader.readline()).strip()
    handler = {b"check-in": check_in, b"stop": stop}.get(line)
    writer.write(((handler() if handler else "unknown request") + "\n").encode())
    await writer.drain()
    writer.close()


async def ask(state: Path, request: str) -> str:
    """Send a request to the running service of the installation in `state`."""
    reader, writer = await asyncio.open_unix_connection(str(control_path(state)))
    writer.write(request.encode() + b"\n")
    await writer.drain()
    answer = await reader.readline()
    writer.close()
    return answer.decode().strip()
