"""The installed Jump Client as a service: it keeps in touch with its site until stopped,
carries out what the site asks (check in, uninstall), and takes `bastion jump-client
check-in` from the endpoint on a Unix socket in its state directory (owner only)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from bastion.agents.connection import Endpoint
from bastion.agents.errors import AgentError
from bastion.agents.identity import load_or_create
from bastion.agents.installation import ANCHORS, IDENTITY, Installation, load, uninstall
from bastion.agents.jump_client import JumpClient, JumpClientConfig, Observer
from bastion.agents.protocol import (
    Command,
    CommandResult,
    Mode,
    RetryAfter,
    Statistics,
    Welcome,
)
from bastion.agents.statistics import collect
from bastion.agents.trust import anchor_fingerprints, anchors_context

log = logging.getLogger("bastion.jump_client")
CONTROL = "control.sock"
UNINSTALL_GRACE = 1.0


def control_path(state: Path) -> Path:
    return state / CONTROL


def _config(installed: Installation, state: Path, wake_port: int) -> JumpClientConfig:
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
    )


async def _statistics() -> Statistics:
    return await asyncio.to_thread(collect)


class LoggingObserver(Observer):
    """What the service says in its log: connected, refused and why, lost, failures."""

    def welcomed(self, welcome: Welcome) -> None:
        log.info("connected to the site (%s)", welcome.mode)

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


class Service:
    """One installed Jump Client, running."""

    def __init__(self, state: Path, wake_port: int = 0) -> None:
        self.state = state
        self.installed = load(state)
        self.client = JumpClient(
            _config(self.installed, state, wake_port),
            load_or_create(state / IDENTITY),
            anchors_context(state / ANCHORS),
            _statistics,
            commands=self.command,
            observer=LoggingObserver(),
        )
        self.stop = asyncio.Event()

    async def command(self, command: Command) -> CommandResult:
        if command.body.kind == "uninstall":
            log.warning("the site asks this Jump Client to uninstall itself")
            asyncio.get_running_loop().call_later(UNINSTALL_GRACE, self._uninstall)
            return CommandResult(
                command_id=command.command_id, outcome="done", detail="uninstalled"
            )
        return await self.client.builtin_command(command)

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
        log.info("Jump Client %s of %s started", self.installed.client_id, self.installed.site)
        await self.stop.wait()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        control.close()
        control_path(self.state).unlink(missing_ok=True)

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).strip()
        if line == b"check-in":
            self.client.wake()
            writer.write(b"ok\n")
        else:
            writer.write(b"unknown request\n")
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
