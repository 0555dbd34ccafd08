"""A test session, for the check of a new version in the pair's upgrade runbook.

A Jump Client of the build this appliance runs is installed for the moment in a
directory of its own, from an installer made as an administrator makes one, but pointed
at this appliance's own addresses, its web listener and its gateway (the site's name may
still lead to the other appliance; certificates are checked as the site's name). Once
it is online, a session is opened to it by the same use case as a console's, the
console's end joins over this appliance's own web listener (TLS checked against the
anchors the installer carries), a shell command's answer and an exit code come back
through the relay, and the client is deleted as the Jump Clients page deletes one: it
uninstalls itself. The session's record and recording stay in the reports, opened by
`appliance:failover-upgrade`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from bastion.access_console.protocol import (
    ConsoleHello,
    Ended,
    Exited,
    FromSite,
    OpenSession,
    Started,
    read_from_site,
    write,
)
from bastion.agents.errors import AgentError
from bastion.agents.installation import load as load_installation
from bastion.agents.protocol import MAX_FRAME_BYTES
from bastion.jump_clients import fleet as jump_client_fleet
from bastion.jump_clients import service as jump_clients
from bastion.jump_clients.service import InstallerRequest, JumpClientsSetup
from bastion.platform.errors import ConflictError, NotFoundError, ServiceError
from bastion.platform.principals import Actor, Principal, Role
from bastion.platform.runtime import Runtime
from bastion.sessions.console import start_session
from bastion.sessions.relay import Rendezvous
from bastion.supervisor.sockets import ListenAddress

log = logging.getLogger("bastion.entrypoints.session_probe")

PROBE = Actor(Principal("appliance:failover-upgrade", Role.ADMINISTRATOR), "appliance")
PROBE_SECONDS = 90.0
"""The whole test session, from the installer to the client gone."""
ONLINE_SECONDS = 45.0
STEP_SECONDS = 20.0
GONE_SECONDS = 20.0
COMMAND = b"echo probe-$((40+2))\r"
ANSWER = b"probe-42"
"""Shown only if the remote shell worked the sum out (the typed line shows the sum)."""
EXIT_CODE = 7


class ProbeFailedError(ConflictError):
    """The test session did not go through; the message says where it stopped."""


def own_host(host: str) -> str:
    """The address to reach a listener bound to `host` on this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return "::1" if host == "::" else host


@dataclass
class SessionProbe:
    """Runs on the worker's event loop, where the sessions live; asked from a thread."""

    runtime: Runtime
    loop: asyncio.AbstractEventLoop
    gateway: ListenAddress
    """Where this appliance's gateway listens (its socket's own address)."""
    web: ListenAddress
    """This appliance's web listener, where the console's end and the client's join."""

    def run(self) -> str:
        """The test session, waited for from a thread other than the loop's."""
        future = asyncio.run_coroutine_threadsafe(self._probe(), self.loop)
        try:
            done = future.result(timeout=PROBE_SECONDS)
        except TimeoutError:
            future.cancel()
            log.warning("the test session did not end within %.0f s", PROBE_SECONDS)
            raise ProbeFailedError(
                f"The test session did not end within {PROBE_SECONDS:.0f} s."
            ) from None
        except ProbeFailedError as error:
            log.warning("%s", error)
            raise
        log.info("%s", done)
        return done

    async def _probe(self) -> str:
        started = time.monotonic()
        setup = self.runtime.part(JumpClientsSetup)
        home = Path(tempfile.mkdtemp(prefix="bastion-probe-"))
        process: asyncio.subprocess.Process | None = None
        installer_id: int | None = None
        client_id = ""
        deleted = False
        try:
            installer = home / "installer.json"
            made, anchors = await asyncio.to_thread(self._installer, setup, installer)
            installer_id = made
            state = home / "client"
            await self._bastion("install", str(installer), "--dir", str(state))
            await asyncio.to_thread(self._revoke, setup, made)
            installer_id = None
            client_id = load_installation(state).client_id
            with (home / "client.log").open("wb") as output:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    *("-m", "bastion", "jump-client", "run", "--dir", str(state)),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                )
            row_id = await self._online(setup, client_id, process, home / "client.log")
            online = time.monotonic() - started
            opened = await start_session(
                self.runtime,
                setup,
                self.runtime.part(Rendezvous),
                PROBE,
                OpenSession(jump_item_id=row_id),
            )
            await self._console(setup.site, anchors, opened.terminal_path, opened.token)
            await self._delete(client_id)
            deleted = True
            gone = await self._gone(process)
            took = time.monotonic() - started
            return (
                f"test session {opened.session_id}: a Jump Client of this build online through "
                f"the gateway in {online:.1f} s, a command answered and exit code {EXIT_CODE} "
                f"relayed, the client {gone}; {took:.1f} s in all"
            )
        except ProbeFailedError:
            raise
        except TimeoutError:
            raise ProbeFailedError(
                "The test session's console did not see the shell answer in time."
            ) from None
        except (AgentError, OSError, ServiceError, WebSocketException) as error:
            raise ProbeFailedError(f"The test session failed: {error}") from None
        finally:
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
            if installer_id is not None:
                await asyncio.to_thread(self._revoke, setup, installer_id)
            if client_id and not deleted:  # its record stays, waiting to uninstall
                await self._delete(client_id)
            await asyncio.to_thread(shutil.rmtree, home, True)

    def _installer(self, setup: JumpClientsSetup, path: Path) -> tuple[int, str]:
        """An installer for a client in no Jump Group (administrators only), its file
        pointed at this appliance's gateway; its id and the anchors it carries."""
        request = InstallerRequest(
            tag="failover-upgrade",
            comments="The test session of the pair's upgrade runbook; it uninstalls itself.",
            valid_minutes=10,
        )
        with self.runtime.uow() as uow:
            made = jump_clients.make_installer(uow, setup, PROBE, request)
            uow.commit()
        body = json.loads(made.file)
        body["gateway"] = str(self.gateway)
        body["site_url"] = f"https://{ListenAddress(setup.site, self.web.port)}"
        body["site_address"] = self.web.host
        path.write_text(json.dumps(body))
        path.chmod(0o600)
        return made.installer.id, str(body["anchors"])

    def _revoke(self, setup: JumpClientsSetup, installer_id: int) -> None:
        with self.runtime.uow() as uow:
            jump_clients.revoke_installer(uow, setup, PROBE, installer_id)
            uow.commit()

    async def _delete(self, client_id: str) -> None:
        """Deleted as the Jump Clients page and API delete a client: a connected one is
        told to uninstall itself at once, and its record goes then (not registered, or
        gone already: nothing to do)."""
        uow = self.runtime.uow().__enter__()  # as a request's: the database only off the loop
        try:
            row_id = await asyncio.to_thread(jump_clients.row_id_of, uow, client_id)
            if row_id is not None:
                await jump_client_fleet.delete_client(self.runtime, uow, PROBE, row_id)
        except NotFoundError:
            pass
        finally:
            await asyncio.to_thread(uow.__exit__, None, None, None)

    async def _bastion(self, *args: str) -> None:
        done = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bastion", "jump-client", *args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            said, _ = await asyncio.wait_for(done.communicate(), STEP_SECONDS)
        except TimeoutError:
            done.kill()
            raise ProbeFailedError(f"`jump-client {args[0]}` did not end in time.") from None
        if done.returncode != 0:
            text = " ".join(said.decode(errors="replace").split())[-300:]
            raise ProbeFailedError(f"`jump-client {args[0]}` failed: {text}")

    async def _online(
        self,
        setup: JumpClientsSetup,
        client_id: str,
        process: asyncio.subprocess.Process,
        log_file: Path,
    ) -> int:
        deadline = time.monotonic() + ONLINE_SECONDS
        while time.monotonic() < deadline:
            found = await asyncio.to_thread(self._status, setup, client_id)
            if found is not None and found[1]:
                return found[0]
            if process.returncode is not None:
                break
            await asyncio.sleep(0.2)
        said = " ".join(log_file.read_text(errors="replace").split())[-300:]
        raise ProbeFailedError(
            f"The Jump Client did not come online through the gateway at "
            f"{self.gateway} within {ONLINE_SECONDS:.0f} s: {said}"
        )

    def _status(self, setup: JumpClientsSetup, client_id: str) -> tuple[int, bool] | None:
        with self.runtime.uow() as uow:
            row_id = jump_clients.row_id_of(uow, client_id)
            if row_id is None:
                return None
            return row_id, jump_clients.get_client(uow, setup, row_id).online

    async def _console(self, site: str, anchors: str, path: str, token: str) -> None:
        """The console's end: hello, the shell started, a command answered, its exit code."""
        tls = ssl.create_default_context(cadata=anchors)
        url = f"wss://{self.web}{path}"
        async with asyncio.timeout(STEP_SECONDS * 2):
            async with connect(
                url,
                ssl=tls,
                server_hostname=site,
                max_size=MAX_FRAME_BYTES,
                compression=None,
            ) as ws:
                await ws.send(write(ConsoleHello(token=token)))
                await _until(ws, lambda m: isinstance(m, Started), "the shell to start")
                await ws.send(COMMAND)
                await _output(ws, ANSWER)
                await ws.send(f"exit {EXIT_CODE}\r".encode())
                ended = await _until(
                    ws, lambda m: isinstance(m, Exited | Ended), "the shell to exit"
                )
                if not isinstance(ended, Exited) or ended.code != EXIT_CODE:
                    raise ProbeFailedError(
                        f"The session ended with {ended!r}, not exit code {EXIT_CODE}."
                    )

    async def _gone(self, process: asyncio.subprocess.Process) -> str:
        try:
            await asyncio.wait_for(process.wait(), GONE_SECONDS)
        except TimeoutError:
            return f"told to uninstall and stopped after {GONE_SECONDS:.0f} s"
        return "uninstalled"


async def _frame(ws: ClientConnection, what: str) -> str | bytes:
    try:
        return await ws.recv()
    except ConnectionClosed as closed:
        raise ProbeFailedError(f"The session closed while waiting for {what} ({closed}).") from None


def _ended(message: FromSite, what: str) -> None:
    if isinstance(message, Exited | Ended):
        raise ProbeFailedError(f"The session ended while waiting for {what}: {message!r}.")


async def _until(ws: ClientConnection, wanted: Callable[[FromSite], bool], what: str) -> FromSite:
    """The site's next message that is `wanted` (terminal bytes before it are passed)."""
    while True:
        frame = await _frame(ws, what)
        if isinstance(frame, bytes):
            continue
        message = read_from_site(frame)
        if wanted(message):
            return message
        _ended(message, what)


async def _output(ws: ClientConnection, answer: bytes) -> None:
    seen = b""
    what = f"the shell to answer {answer.decode()}"
    while answer not in seen:
        frame = await _frame(ws, what)
        if isinstance(frame, str):
            _ended(read_from_site(frame), what)
            continue
        seen = (seen + frame)[-4096:]
