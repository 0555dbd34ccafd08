"""A Jump Client's sessions: a real shell on a real PTY, relayed over real TLS.

The site's side of the session connection is played by a small TLS WebSocket server
made with the `websockets` library (not our framing code), on loopback, with a
certificate made here; the agent's side is the real session and connection code, driven
directly or through a real Jump Client told `start_session` by a real gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import ssl
import zipfile
from base64 import urlsafe_b64encode
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from bastion.agents import upgrading
from bastion.agents.connection import Endpoint
from bastion.agents.errors import TrustError
from bastion.agents.identity import load_or_create
from bastion.agents.installation import ANCHORS, IDENTITY, INSTALLATION
from bastion.agents.protocol import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    SESSION_PATH,
    Codec,
    Command,
    CommandResult,
    Error,
    Resize,
    SessionEnd,
    StartSession,
    Upgrade,
)
from bastion.agents.runner import Service
from bastion.agents.session import CHUNK, Session, rendezvous_endpoint, shell_opener
from bastion.agents.shell import login_shell
from bastion.agents.trust import anchors_context
from bastion.jump_clients.directory import ClientRecord
from bastion.jump_clients.routing import Deliver
from tests.support.jump_clients import SITE, Pki, Recorder, run, serving, site_release
from tests.support.pki import TestCa

TOKEN = "T" * 43
CLIENT_ID = "jc_session_test"
PID = re.compile(rb"pid:(\d+):")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context whose certificate names the site but comes from another CA."""
    issued = TestCa("A stranger's CA").issue([SITE])
    chain = tmp_path_factory.mktemp("stranger") / "server.pem"
    chain.write_bytes(issued.certificate_pem() + issued.key_pem())
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(chain)
    return tls


@dataclass
class SiteSide:
    """One session connection, as the site sees it."""

    ws: ServerConnection
    hello: dict[str, Any]
    output: bytearray = field(default_factory=bytearray)
    messages: list[dict[str, Any]] = field(default_factory=list)

    async def read_until(self, pattern: bytes | re.Pattern[bytes], timeout: float = 10) -> bytes:
        """Terminal output until `pattern` appears in it; the match."""
        async with asyncio.timeout(timeout):
            while True:
                found = self._find(pattern)
                if found is not None:
                    return found
                await self._next()

    def _find(self, pattern: bytes | re.Pattern[bytes]) -> bytes | None:
        if isinstance(pattern, bytes):
            return pattern if pattern in self.output else None
        match = pattern.search(self.output)
        return match.group(1) if match else None

    async def _next(self) -> None:
        frame = await self.ws.recv()
        if isinstance(frame, bytes):
            assert len(frame) <= CHUNK
            self.output += frame
        else:
            self.messages.append(json.loads(frame))

    async def until_closed(self, timeout: float = 10) -> list[dict[str, Any]]:
        """Everything until the agent closes; the text messages."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                while True:
                    await self._next()
        assert self.ws.close_code is not None, "the agent did not close the connection"
        return self.messages

    async def type(self, keys: str) -> None:
        await self.ws.send(keys.encode())

    async def shell_pid(self) -> int:
        await self.type("echo pid:$$:\r")
        return int(await self.read_until(PID))


class Rendezvous:
    """The site's side of session connections: accepts any, hands each to the test."""

    def __init__(self) -> None:
        self.arrived: asyncio.Queue[SiteSide] = asyncio.Queue()
        self.paths: list[str] = []
        self.hosts: list[str] = []
        self.port = 0
        self.refusal = ""

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        self.hosts.append(ws.request.headers["Host"])
        hello = json.loads(await ws.recv())
        if self.refusal:
            error = Error(code="authentication_failed", detail=self.refusal)
            await ws.send(Codec().write(error))
            await ws.close(1008)
            return
        await self.arrived.put(SiteSide(ws, hello))
        await ws.wait_closed()

    async def next(self, timeout: float = 10) -> SiteSide:
        async with asyncio.timeout(timeout):
            return await self.arrived.get()


@contextlib.asynccontextmanager
async def rendezvous(tls: ssl.SSLContext) -> AsyncIterator[Rendezvous]:
    site = Rendezvous()
    async with serve(site.handler, "127.0.0.1", 0, ssl=tls) as server:
        site.port = next(iter(server.sockets)).getsockname()[1]
        yield site


def order(site: Rendezvous, session_id: str = "s1", cols: int = 80, rows: int = 24) -> StartSession:
    return StartSession(
        session_id=session_id,
        rendezvous=f"127.0.0.1:{site.port}",
        token=TOKEN,
        cols=cols,
        rows=rows,
    )


async def start(
    site: Rendezvous, anchors: Path, **options: Any
) -> tuple[Session, asyncio.Task[str], SiteSide]:
    """A session opened with the real connection code, its shell running."""
    start_order = order(site, **options)
    session = Session(start_order, CLIENT_ID, Codec(), shell_opener(login_shell()))
    endpoint = rendezvous_endpoint(start_order, Endpoint(SITE, 1, timeout=5))
    await session.connect(endpoint, anchors_context(anchors))
    task = asyncio.create_task(session.run())
    side = await site.next()
    async with asyncio.timeout(5):  # the shell is started by the session's task
        while session.terminal is None and not task.done():
            await asyncio.sleep(0.01)
    return session, task, side


def alive(pid: int) -> bool:
    """Whether `pid` is a process that has not ended (zombies count as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def in_session(sid: int) -> list[int]:
    """The live processes in the session `sid` (a shell and its jobs)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == sid and fields[0] != "Z":
                    members.append(int(entry.name))
    return members


def children() -> set[int]:
    """Processes whose parent is this test process."""
    mine = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == os.getpid():
                    mine.add(int(entry.name))
    return mine


async def gone(pids: list[int], timeout: float = 5) -> bool:
    async with asyncio.timeout(timeout):
        while any(alive(pid) for pid in pids):
            await asyncio.sleep(0.05)
    return True


async def sleeping(sid: int) -> int:
    """The pid of the `sleep` the shell of session `sid` runs, once it runs."""
    async with asyncio.timeout(10):
        while True:
            for pid in in_session(sid):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                        return pid
            await asyncio.sleep(0.05)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- the relay -------------------------------------------------------------------


def test_the_session_says_hello_relays_a_shell_and_reports_its_exit_code(pki: Pki) -> None:
    async def scenario() -> None:
        async with rendezvous(pki.server) as site:
            _, task, side = await start(site, pki.anchors)
            assert site.paths == [SESSION_PATH + "s1"]
            # dialled at 127.0.0.1, named as the site (the certificate names only the site)
            assert site.hosts == [f"{SITE}:{site.port}"]
            assert side.hello == {
                "v": PROTOCOL_VERSION,
                "type": "session_hello",
                "session_id": "s1",
                "client_id": CLIENT_ID,
                "token": TOKEN,
            }
            await side.type("echo hel''lo $TERM\r")
            await side.read_until(b"hello xterm-256color")
            await side.type("exit 7\r")
            assert await side.until_closed() == [
                {"v": PROTOCOL_VERSION, "type": "session_exit", "code": 7}
            ]
            assert await task == "the shell exited with 7"

    run(scenario())


def test_a_shell_killed_by_a_signal_exits_with_128_plus_its_number(pki: Pki) -> None:
    async def scenario() -> None:
        async with rendezvous(pki.server) as site:
            _, task, side = await start(site, pki.anchors)
            await side.type("kill -KILL $$\r")
            assert await side.until_closed() == [
                {"v": PROTOCOL_VERSION, "type": "session_exit", "code": 137}
            ]
            await task

    run(scenario())


def test_the_terminal_has_the_ordered_size_and_follows_a_resize(pki: Pki) -> None:
    async def scenario() -> None:
        async with rendezvous(pki.server) as site:
            _, task, side = await start(site, pki.anchors, cols=91, rows=31)
            await side.type("stty size\r")
            await side.read_until(b"31 91")
            await side.ws.send(Codec().write(Resize(cols=120, rows=40)))
            await side.type("stty size\r")
            await side.read_until(b"40 120")
            await side.type("exit\r")
            await side.until_closed()
            await task

    run(scenario())


def test_ctrl_c_interrupts_the_foreground_job_and_the_shell_goes_on(pki: Pki) -> None:
    async def scenario() -> None:
        async with rendezvous(pki.server) as site:
            session, task, side = await start(site, pki.anchors)
            assert session.terminal is not None
            await side.type("sleep 100\r")
            sleep = await sleeping(session.terminal.pid)
            await side.type("\x03")
            assert await gone([sleep])
            await side.type("echo sti''ll here\r")
            await side.read_until(b"still here")
            assert alive(session.terminal.pid)
            await side.type("exit\r")
            await side.until_closed()
            await task

    run(scenario())


def test_large_output_arrives_whole_in_frames_of_at_most_16_kib(pki: Pki) -> None:
    async def scenario() -> None:
        async with rendezvous(pki.server) as site:
            _, task, side = await start(site, pki.anchors)
            await side.type("head -c 300000 /dev/zero | tr '\\0' x; echo; echo do''ne\r")
            await side.read_until(b"done\r\n", timeout=20)
            assert side.output.count(b"x") >= 300000  # the typed command echoes one more
            await side.type("exit\r")
            await side.until_closed()
            await task

    run(scenario())


def test_a_site_that_stops_reading_pauses_the_shell_instead_of_filling_memory(pki: Pki) -> None:
    async def scenario() -> None:
        async with rendezvous(pki.server) as site:
            session, task, side = await start(site, pki.anchors)
            link = session.link
            assert link is not None and link.transport is not None
            await side.type("yes\r")
            async with asyncio.timeout(30):  # the site reads nothing meanwhile
                while session.writable.is_set():
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1)
            assert not session.writable.is_set(), "the PTY is read again"
            assert link.transport.get_write_buffer_size() <= link.max_buffer
            assert not session.ended.done()
            await side.type("\x03")
            await side.type("echo fin''ished\r")
            await side.read_until(b"finished", timeout=30)
            await side.type("exit\r")
            await side.until_closed()
            await task

    run(scenario())


def test_the_relay_runs_on_the_standard_event_loop_too(pki: Pki) -> None:
    async def scenario() -> None:
        async with rendezvous(pki.server) as site:
            _, task, side = await start(site, pki.anchors)
            await side.type("stty size; exit 5\r")
            await side.read_until(b"24 80")
            assert await side.until_closed() == [
                {"v": PROTOCOL_VERSION, "type": "session_exit", "code": 5}
            ]
            await task

    asyncio.run(asyncio.wait_for(scenario(), 30))


# -- ending ----------------------------------------------------------------------


def test_session_end_hangs_up_the_shell_and_its_running_job(pki: Pki) -> None:
    async def scenario() -> None:
        async with rendezvous(pki.server) as site:
            session, task, side = await start(site, pki.anchors)
            assert session.terminal is not None
            shell = session.terminal.pid
            await side.type("sleep 100\r")
            sleep = await sleeping(shell)
            await side.ws.send(Codec().write(SessionEnd(reason="the representative left")))
            assert await side.until_closed() == []
            assert await task == "ended by the site: the representative left"
            assert not alive(shell)
            # The job hears the hang-up from the kernel, which may deliver it a moment
            # after the shell has been reaped.
            assert await gone([sleep])
            assert in_session(shell) == []

    run(scenario())


def test_a_dropped_connection_leaves_no_process_and_no_open_file(pki: Pki) -> None:
    async def scenario() -> None:
        async with rendezvous(pki.server) as site:
            before = open_fds()
            session, task, side = await start(site, pki.anchors)
            assert session.terminal is not None
            shell = session.terminal.pid
            await side.type("sleep 100\r")
            await sleeping(shell)
            assert side.ws.transport is not None
            side.ws.transport.abort()
            how = await task
            assert how.startswith("the connection ended")
            assert await gone([*in_session(shell), shell])
            assert shell not in children()
            await asyncio.sleep(0.1)
            assert open_fds() == before

    run(scenario())


def test_a_bad_or_oversized_message_is_answered_with_an_error_and_ends_cleanly(pki: Pki) -> None:
    async def scenario() -> None:
        async with rendezvous(pki.server) as site:
            big = "x" * (MAX_FRAME_BYTES + 1)
            for frame, code, close in (("not json", "malformed", 1002), (big, "too_large", 1009)):
                session, task, side = await start(site, pki.anchors)
                assert session.terminal is not None
                shell = session.terminal.pid
                await side.ws.send(frame)
                assert [m["code"] for m in await side.until_closed()] == [code]
                assert side.ws.close_code == close
                assert (await task).startswith(("the site sent a bad message", "the connection"))
                assert await gone([shell])

    run(scenario())


def test_a_session_the_site_refuses_at_once_starts_no_shell(pki: Pki) -> None:
    async def scenario() -> None:
        async with rendezvous(pki.server) as site:
            site.refusal = "this session token was used already"
            start_order = order(site)
            session = Session(start_order, CLIENT_ID, Codec(), shell_opener(login_shell()))
            endpoint = rendezvous_endpoint(start_order, Endpoint(SITE, 1, timeout=5))
            processes = children()
            await session.connect(endpoint, anchors_context(pki.anchors))
            await session.closed.wait()
            how = await session.run()
            assert how == "the site refused the session: this session token was used already"
            assert session.terminal is None and children() == processes

    run(scenario())


def test_a_server_certificate_not_from_the_anchors_is_refused_before_any_shell(
    pki: Pki, stranger: ssl.SSLContext
) -> None:
    async def scenario() -> None:
        async with rendezvous(stranger) as site:
            before, processes = open_fds(), children()
            start_order = order(site)
            session = Session(start_order, CLIENT_ID, Codec(), shell_opener(login_shell()))
            endpoint = rendezvous_endpoint(start_order, Endpoint(SITE, 1, timeout=5))
            with pytest.raises(TrustError, match="not signed by a trust anchor"):
                await session.connect(endpoint, anchors_context(pki.anchors))
            assert session.terminal is None and children() == processes
            assert site.arrived.empty()
            await asyncio.sleep(0.1)
            assert open_fds() == before

    run(scenario())


# -- through a Jump Client --------------------------------------------------------


def test_a_jump_client_runs_several_sessions_at_once_without_holding_its_connection(
    pki: Pki,
) -> None:
    async def scenario() -> None:
        async with serving(pki, heartbeat_interval=0.2) as gateway, rendezvous(pki.server) as site:
            identity, recorder = gateway.enrol("sessions"), Recorder()
            client = gateway.client(identity, recorder, sessions=True)
            gateway.start(client)
            await recorder.wait_for("welcomed")
            for n in (1, 2):
                body = order(site, session_id=f"s{n}")
                command = Command(command_id=f"c{n}", body=body)
                await gateway.port.publish(Deliver(identity.client_id, command))
            sides = {(side := await site.next()).hello["session_id"]: side for _ in (1, 2)}
            results = await recorder.wait_for("commanded", 2)
            assert {(r.command_id, r.outcome) for r in results} == {("c1", "done"), ("c2", "done")}
            assert client.sessions_in_progress == 2
            await sides["s1"].type("echo o''ne\r")
            await sides["s2"].type("echo t''wo\r")
            await sides["s2"].read_until(b"two")
            await sides["s1"].read_until(b"one")
            beats = len(recorder.of("heartbeat"))
            await sides["s1"].type("exit 3\r")
            assert (await sides["s1"].until_closed())[-1]["code"] == 3
            await recorder.wait_for("heartbeat", beats + 2)
            assert client.sessions_in_progress == 1
            await sides["s2"].type("exit\r")
            await sides["s2"].until_closed()
            async with asyncio.timeout(5):
                await client.sessions.ended()
            await gateway.sink.wait_for(lambda: len(gateway.sink.results) == 2)

    run(scenario())


def test_a_jump_client_answers_failed_when_the_site_of_the_session_is_not_trusted(
    pki: Pki, stranger: ssl.SSLContext
) -> None:
    async def scenario() -> None:
        async with serving(pki) as gateway, rendezvous(stranger) as site:
            identity, recorder = gateway.enrol("untrusting"), Recorder()
            client = gateway.client(identity, recorder, sessions=True)
            gateway.start(client)
            await recorder.wait_for("welcomed")
            processes = children()
            command = Command(command_id="c1", body=order(site))
            await gateway.port.publish(Deliver(identity.client_id, command))
            answer: CommandResult = (await recorder.wait_for("commanded"))[0]
            assert answer.outcome == "failed"
            assert "not signed by a trust anchor" in answer.detail
            async with asyncio.timeout(5):
                await client.sessions.ended()
            assert children() == processes
            await gateway.sink.wait_for(lambda: len(gateway.sink.results) == 1)

    run(scenario())


def test_a_jump_client_refuses_sessions_when_told_and_when_turned_off(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki) as gateway, rendezvous(pki.server) as site:
            on, off = gateway.enrol("on"), gateway.enrol("off")
            recorders = {on.client_id: Recorder(), off.client_id: Recorder()}
            client = gateway.client(on, recorders[on.client_id], sessions=True)
            gateway.start(client)
            gateway.start(gateway.client(off, recorders[off.client_id]))
            for recorder in recorders.values():
                await recorder.wait_for("welcomed")
            client.sessions.refused = "this Jump Client is upgrading"
            for identity in (on, off):
                command = Command(command_id="c1", body=order(site))
                await gateway.port.publish(Deliver(identity.client_id, command))
            answer: CommandResult = (await recorders[on.client_id].wait_for("commanded"))[0]
            assert (answer.outcome, answer.detail) == ("failed", "this Jump Client is upgrading")
            answer = (await recorders[off.client_id].wait_for("commanded"))[0]
            assert answer.outcome == "unsupported"
            assert site.arrived.empty() and client.sessions_in_progress == 0

    run(scenario())


# -- an upgrade waits for the sessions in progress -------------------------------


def tiny_wheel(path: Path, version: str) -> bytes:
    """A pure-Python wheel with a RECORD, as a site's build is."""
    files = {
        "marker.py": b"BUILD = 'test'\n",
        f"bastion-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n",
    }
    record = "".join(
        f"{name},sha256={urlsafe_b64encode(sha256(data).digest()).rstrip(b'=').decode()},"
        f"{len(data)}\n"
        for name, data in files.items()
    )
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"bastion-{version}.dist-info/RECORD", record)
    return path.read_bytes()


def test_an_upgrade_waits_for_the_sessions_in_progress_and_refuses_new_ones(
    tmp_path: Path,
) -> None:
    ca = TestCa()
    issued = ca.issue([SITE, "127.0.0.1"])
    (tmp_path / "server.pem").write_bytes(issued.certificate_pem() + issued.key_pem())
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "server.pem")
    (tmp_path / "pki").mkdir()
    pki = Pki(tmp_path / "pki")  # only its server context is used, and replaced below
    pki.server = tls
    build = tiny_wheel(tmp_path / "bastion-9.9.9-py3-none-any.whl", "9.9.9")
    site_release(tmp_path / "data", "9.9.9", build)
    state = tmp_path / "state"
    state.mkdir()
    (state / ANCHORS).write_bytes(ca.pem())
    identity = load_or_create(state / IDENTITY)

    async def scenario() -> None:
        async with serving(pki, data_dir=tmp_path / "data") as gateway, rendezvous(tls) as site:
            gateway.directory.add(ClientRecord(identity.client_id, identity.public_key, "active"))
            installed = {
                "site": SITE,
                "site_url": "https://127.0.0.1:9",  # the build comes over the connection
                "gateway": f"127.0.0.1:{gateway.listen_port}",
                "mode": "active",
                "client_id": identity.client_id,
                "site_version": "",
            }
            (state / INSTALLATION).write_text(json.dumps(installed))
            service, recorder = Service(state), Recorder()
            service.client.observer = recorder
            gateway.start(service.client)
            await recorder.wait_for("welcomed")

            async def command(command_id: str, body: StartSession | Upgrade) -> CommandResult:
                await gateway.port.publish(
                    Deliver(identity.client_id, Command(command_id=command_id, body=body))
                )
                async with asyncio.timeout(20):
                    while True:
                        for result in await recorder.wait_for("commanded"):
                            if result.command_id == command_id:
                                return result
                        recorder.changed.clear()
                        await recorder.changed.wait()

            assert (await command("s", order(site))).outcome == "done"
            side = await site.next()
            upgrade = Upgrade(version="9.9.9", sha256=sha256(build).hexdigest(), size=len(build))
            answer = await command("u", upgrade)
            assert (answer.outcome, answer.detail) == (
                "done",
                "restarting into 9.9.9 once its 1 session(s) end",
            )
            refused = await command("s2", order(site, session_id="s2"))
            assert refused.outcome == "failed" and "upgrading to 9.9.9" in refused.detail
            await asyncio.sleep(0.3)
            assert not service.stop.is_set() and upgrading.trial(state) is None
            await side.type("exit\r")
            await side.until_closed()
            async with asyncio.timeout(5):
                await service.stop.wait()
            trial = upgrading.trial(state)
            assert trial is not None and trial.version == "9.9.9"
            assert service.restart_into == trial.lib
            assert (Path(trial.lib) / "marker.py").is_file()

    run(scenario())
