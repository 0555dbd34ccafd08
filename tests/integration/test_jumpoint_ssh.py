"""A Jumpoint's side of an SSH session against a real OpenSSH server: the pinned host key
is the only one accepted, the vaulted key signs in, the PTY channel's bytes and exit
status come through the same `Pty` a Jump Client's shell gives the relay; and a real
Jumpoint, told through the gateway, relays it over the session's connection."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.agents.protocol import (
    PROTOCOL_VERSION,
    Codec,
    Command,
    Resize,
    SessionEnd,
    SshTarget,
    StartSshSession,
)
from bastion.agents.session import CannotStartError
from bastion.agents.ssh import SshTerminal
from bastion.jump_clients.routing import Deliver
from tests.integration.test_jump_client_sessions import order, rendezvous
from tests.support.appliance import free_port
from tests.support.endpoints import eventually
from tests.support.jump_clients import Pki, Recorder, run, serving
from tests.support.sshd import SshServer, keypair, ssh_server

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="needs sshd")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with ssh_server(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def target(server: SshServer, **changes: object) -> SshTarget:
    fields: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "host_key": server.host_key,
        "private_key": server.client_key,
    }
    return SshTarget.model_validate(fields | changes)


async def read_all(terminal: SshTerminal) -> bytes:
    """What the terminal gives the relay, until the server's side ends."""
    loop = asyncio.get_running_loop()
    got = bytearray()
    while True:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(terminal.master, _wake, ready)
        try:
            await asyncio.wait_for(ready, 10)
        finally:
            loop.remove_reader(terminal.master)
        data = os.read(terminal.master, 65536)
        if not data:
            return bytes(got)
        got += data


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def test_a_command_runs_on_the_pty_channel_and_its_exit_status_comes_back(
    sshd: SshServer,
) -> None:
    async def scenario() -> None:
        terminal = await SshTerminal.open(target(sshd), 100, 30)
        try:
            os.write(terminal.master, b"stty size; echo jumped-$((6*7)); exit 3\n")
            output = await read_all(terminal)
            assert await asyncio.wait_for(terminal.exited, 10) == 3
        finally:
            terminal.close()
        assert b"jumped-42" in output
        assert b"30 100" in output  # the ordered size reached the server's PTY

    run(scenario())


def test_a_host_key_other_than_the_pinned_one_is_refused_before_any_credential(
    sshd: SshServer, tmp_path: Path
) -> None:
    _, other = keypair(tmp_path / "other", "not the server")
    before = len(sshd.log.read_bytes())

    async def scenario() -> None:
        with pytest.raises(CannotStartError) as refused:
            await SshTerminal.open(target(sshd, host_key=other), 80, 24)
        message = str(refused.value)
        assert "presented the host key ssh-ed25519 SHA256:" in message
        assert "not the one pinned for this Jump Item; nothing was sent to it" in message
        assert refused.value.code == 255

    run(scenario())
    eventually(lambda: b"[preauth]" in sshd.log.read_bytes()[before:], 10, "sshd's log")
    attempt = sshd.log.read_bytes()[before:].decode(errors="replace")
    assert f"for {sshd.username}" not in attempt  # no sign-in was tried: no credential left
    assert "publickey" not in attempt and "password" not in attempt


def test_a_credential_the_server_refuses_is_named_as_such(sshd: SshServer, tmp_path: Path) -> None:
    stranger, _ = keypair(tmp_path / "stranger", "not authorized")

    async def scenario() -> None:
        with pytest.raises(CannotStartError) as refused:
            await SshTerminal.open(target(sshd, private_key=stranger), 80, 24)
        assert "refused the vaulted credential" in str(refused.value)
        with pytest.raises(CannotStartError) as refused:
            await SshTerminal.open(target(sshd, private_key=None, password="wrong"), 80, 24)
        assert "refused the vaulted credential" in str(refused.value)

    run(scenario())


def test_a_server_that_does_not_answer_is_unreachable(sshd: SshServer) -> None:
    closed = free_port(sshd.host)

    async def scenario() -> None:
        with pytest.raises(CannotStartError) as refused:
            await SshTerminal.open(target(sshd, port=closed), 80, 24)
        assert f"cannot reach {sshd.username}@{sshd.host}:{closed}" in str(refused.value)

    run(scenario())


def test_a_jumpoint_relays_the_ssh_session_it_is_told_to_open_and_nothing_else(
    sshd: SshServer, pki: Pki
) -> None:
    async def scenario() -> None:
        async with serving(pki) as gateway, rendezvous(pki.server) as site:
            identity, recorder = gateway.enrol("jumpoint"), Recorder()
            jumpoint = gateway.client(identity, recorder, sessions=True, jumpoint=True)
            gateway.start(jumpoint)
            await recorder.wait_for("welcomed")
            shell = order(site, session_id="shell")
            ssh = StartSshSession(**shell.model_dump(exclude={"kind"}) | {"session_id": "ssh"},
                                  target=target(sshd))  # fmt: skip
            for n, body in enumerate((shell, ssh)):
                command = Command(command_id=f"c{n}", body=body)
                await gateway.port.publish(Deliver(identity.client_id, command))
            side = await site.next()
            assert side.hello["session_id"] == "ssh"  # no connection for the shell
            results = {r.command_id: r for r in await recorder.wait_for("commanded", 2)}
            assert results["c0"].outcome == "failed"
            assert "opens SSH sessions only" in results["c0"].detail
            assert results["c1"].outcome == "done"
            await side.ws.send(Codec().write(Resize(cols=91, rows=19)))
            await side.type("stty size; echo through-$((2*21))\r")
            await side.read_until(b"through-42")
            assert b"19 91" in side.output
            await side.type("exit 5\r")
            assert (await side.until_closed())[-1] == {
                "type": "session_exit",
                "v": PROTOCOL_VERSION,
                "code": 5,
            }

    run(scenario())


def test_a_jump_client_opens_no_ssh_session(sshd: SshServer, pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki) as gateway, rendezvous(pki.server) as site:
            identity, recorder = gateway.enrol("plain"), Recorder()
            client = gateway.client(identity, recorder, sessions=True)
            gateway.start(client)
            await recorder.wait_for("welcomed")
            ssh = StartSshSession(**order(site).model_dump(exclude={"kind"}), target=target(sshd))
            await gateway.port.publish(
                Deliver(identity.client_id, Command(command_id="c", body=ssh))
            )
            (result,) = await recorder.wait_for("commanded")
            assert result.outcome == "failed" and "no Jumpoint" in result.detail
            assert site.arrived.empty()

    run(scenario())


def test_a_session_ended_while_its_server_is_still_being_reached_ends_at_once(
    sshd: SshServer, pki: Pki
) -> None:
    """A server that takes the connection and never speaks: the site's end does not wait
    for the Jumpoint's 15 s to reach it, and nothing is left running."""
    with socket.create_server((sshd.host, 0)) as silent:
        port = silent.getsockname()[1]

        async def scenario() -> None:
            async with serving(pki) as gateway, rendezvous(pki.server) as site:
                identity, recorder = gateway.enrol("ending"), Recorder()
                jumpoint = gateway.client(identity, recorder, sessions=True, jumpoint=True)
                gateway.start(jumpoint)
                await recorder.wait_for("welcomed")
                body = StartSshSession(
                    **order(site).model_dump(exclude={"kind"}), target=target(sshd, port=port)
                )
                await gateway.port.publish(
                    Deliver(identity.client_id, Command(command_id="c", body=body))
                )
                side = await site.next()
                await asyncio.sleep(0.5)  # the Jumpoint is waiting for the server's banner
                began = time.monotonic()
                await side.ws.send(Codec().write(SessionEnd(reason="ended by the site")))
                messages = await side.until_closed(timeout=5)
                assert time.monotonic() - began < 3
                assert not any(m.get("type") == "session_exit" for m in messages)
                assert side.output == b""
                async with asyncio.timeout(5):
                    await jumpoint.sessions.ended()

        run(scenario())


@pytest.mark.skipif(os.geteuid() != 0, reason="a password server needs a mount namespace")
@pytest.mark.parametrize(
    ("keyboard_interactive", "accepted"),
    [(False, "Accepted password for"), (True, "Accepted keyboard-interactive/pam for")],
    ids=["password", "keyboard-interactive"],
)
def test_a_vaulted_password_signs_in(
    tmp_path: Path, keyboard_interactive: bool, accepted: str
) -> None:
    """By password authentication, or by answering PAM's prompt on a server that turned
    password authentication off."""
    password = "a vaulted pass phrase"
    with ssh_server(tmp_path, "127.0.0.10", password, keyboard_interactive) as server:

        async def scenario() -> None:
            signed_in = target(server, private_key=None, password=password)
            terminal = await SshTerminal.open(signed_in, 80, 24)
            try:
                os.write(terminal.master, b"echo by-$((40+2)); exit 0\n")
                assert b"by-42" in await read_all(terminal)
                assert await asyncio.wait_for(terminal.exited, 10) == 0
            finally:
                terminal.close()
            with pytest.raises(CannotStartError, match="refused the vaulted credential"):
                await SshTerminal.open(target(server, private_key=None, password="wrong"), 80, 24)

        run(scenario())
    log = server.log.read_text(errors="replace")
    assert accepted in log, log
    assert keyboard_interactive == ("Accepted password for" not in log)
