"""A Jump Client receives its new build over its own connection (protocol 2): real
gateways on real TLS, the real agent code, the site's build on disk as an install leaves
it. No web listener runs here, so nothing can come over HTTPS."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.agents.connection import AgentLink, open_link
from bastion.agents.errors import UpgradeError
from bastion.agents.identity import EndpointIdentity
from bastion.agents.jump_client import JumpClient
from bastion.agents.protocol import (
    BuildRequest,
    Challenge,
    Codec,
    Command,
    CommandResult,
    Hello,
    Upgrade,
    Welcome,
    decode_bytes,
    encode_bytes,
)
from bastion.agents.trust import anchors_context
from bastion.agents.wake import WakeGuard, WakeListener, make_wake, send_wake, wake_key
from bastion.jump_clients.builds import MIB, Bandwidth, create_bandwidth_file, current_build
from bastion.jump_clients.gateway import NO_SUCH_BUILD, NOT_ORDERED
from bastion.jump_clients.routing import Deliver
from bastion.platform import build as this_build
from tests.support.jump_clients import SITE, Pki, Recorder, Site, run, serving, site_release

VERSION = this_build.site_version()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def a_release(data_dir: Path, size: int) -> bytes:
    """A site running this version, whose build is `size` random bytes; the build."""
    data = os.urandom(size)
    site_release(data_dir, VERSION, data)
    return data


def order_for(data: bytes, number: int = 1) -> Command:
    body = Upgrade(version=VERSION, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    return Command(command_id=f"upgrade-{number:016x}", body=body)


async def online_client(site: Site, seed: str) -> tuple[JumpClient, Recorder]:
    identity, recorder = site.enrol(seed), Recorder()
    client = site.client(identity, recorder)
    site.start(client)
    await recorder.wait_for("welcomed")
    return client, recorder


async def ordered(site: Site, client: JumpClient, command: Command) -> None:
    """Deliver `command` as the rollout does: through the port to the holding process."""
    assert await site.port.publish(Deliver(client.identity.client_id, command))


async def receive(client: JumpClient, command: Command) -> bytes:
    assert isinstance(command.body, Upgrade)
    sink = io.BytesIO()
    await client.fetch_build(command.command_id, command.body, sink)
    return sink.getvalue()


def test_an_ordered_build_arrives_whole_over_the_clients_own_connection(
    pki: Pki, tmp_path: Path
) -> None:
    data = a_release(tmp_path, 3 * MIB + 12345)  # not a whole number of messages

    async def scenario() -> None:
        async with serving(pki, data_dir=tmp_path, upgrade_bandwidth_mib=8) as site:
            client, _ = await online_client(site, "receiver")
            command = order_for(data)
            await ordered(site, client, command)
            started = time.monotonic()
            assert await receive(client, command) == data
            took = time.monotonic() - started
            assert took >= 0.3, f"3 MiB at a cap of 8 MiB/s came in {took:.2f} s"
            assert site.gateway.counters["builds_sent"] == 1
            assert not site.gateway.links.copy().pop().downloading
            # The connection goes on: heartbeats and commands as before.
            assert client.identity.client_id in site.gateway.online

    run(scenario())


def test_gateway_processes_sharing_the_ledger_keep_to_the_cap_together(
    pki: Pki, tmp_path: Path
) -> None:
    data = a_release(tmp_path, 2 * MIB)
    ledger = tmp_path / "bandwidth"
    create_bandwidth_file(ledger)

    async def scenario() -> float:
        rollout = Bandwidth(8, ledger)  # the worker's rollout keeps the site's cap in it
        try:
            settings = {"data_dir": tmp_path, "bandwidth_file": ledger}
            async with serving(pki, processes=2, sharing="reuseport", **settings) as site:
                clients = []
                for n in range(40):  # until both processes hold one
                    client, _ = await online_client(site, f"shared-{n}")
                    clients.append(client)
                    holders = {g.config.gateway_id for g in site.gateways if g.online}
                    if len(holders) == 2:
                        break
                first = next(c for c in clients if c.identity.client_id in site.gateways[0].online)
                second = next(c for c in clients if c.identity.client_id in site.gateways[1].online)
                commands = [order_for(data, 1), order_for(data, 2)]
                for client, command in zip((first, second), commands, strict=True):
                    await ordered(site, client, command)
                started = time.monotonic()
                got = await asyncio.gather(
                    receive(first, commands[0]), receive(second, commands[1])
                )
                assert got == [data, data]
                return time.monotonic() - started
        finally:
            rollout.close()

    took: list[float] = []

    async def timed() -> None:
        took.append(await scenario())

    run(timed())
    # 4 MiB at 8 MiB/s together: half a second; each process at the whole cap: a quarter.
    assert took[0] >= 0.4, f"two processes sent 4 MiB in {took[0]:.2f} s at 8 MiB/s"


async def bare_client(site: Site, identity: EndpointIdentity, codec: Codec) -> AgentLink:
    """A link that speaks the protocol itself, in `codec`'s version."""
    link = await open_link(site.endpoint(), anchors_context(site.pki.anchors), codec)
    site.links.append(link)
    challenge = await link.receive(5.0)
    assert isinstance(challenge, Challenge)
    signature = identity.sign_hello(SITE, decode_bytes(challenge.nonce))
    hello = Hello(
        client_id=identity.client_id,
        signature=encode_bytes(signature),
        agent_version="1.0.0",
        mode="active",
        v=codec.version,
    )
    link.send(hello)
    assert isinstance(await link.receive(5.0), Welcome)
    return link


async def asking(site: Site, identity: EndpointIdentity, command: Command) -> AgentLink:
    """A bare client, ordered `command`, that has asked for its build."""
    link = await bare_client(site, identity, Codec())
    assert await site.port.publish(Deliver(identity.client_id, command))
    assert isinstance(await link.receive(5.0), Command)
    assert isinstance(command.body, Upgrade)
    link.send(BuildRequest(command_id=command.command_id, sha256=command.body.sha256))
    return link


def test_a_build_not_ordered_on_this_connection_or_not_served_is_refused(
    pki: Pki, tmp_path: Path
) -> None:
    data = a_release(tmp_path, 256 * 1024)

    async def scenario() -> None:
        async with serving(pki, data_dir=tmp_path) as site:
            client, _ = await online_client(site, "unordered")
            with pytest.raises(UpgradeError, match=re.escape(NOT_ORDERED)):
                await receive(client, order_for(data))
            # Ordered, but the site serves another build now (a newer install).
            other = order_for(b"another build", 2)
            await ordered(site, client, other)
            with pytest.raises(UpgradeError, match=re.escape(NO_SUCH_BUILD)):
                await receive(client, other)
            assert site.gateway.counters["builds_refused"] == 2
            # Neither refusal ends the connection; the ordered build still comes.
            command = order_for(data, 3)
            await ordered(site, client, command)
            assert await receive(client, command) == data

    run(scenario())


def test_a_client_that_stops_reading_its_build_is_cut_off_and_its_upgrade_fails(
    pki: Pki, tmp_path: Path
) -> None:
    data = a_release(tmp_path, 8 * MIB)
    stall = 1.0

    async def scenario() -> None:
        settings = {"data_dir": tmp_path, "build_stall_seconds": stall}
        async with serving(pki, **settings) as site:
            identity = site.enrol("stops-reading")
            command = order_for(data)
            link = await asking(site, identity, command)
            assert link.transport is not None
            link.transport.pause_reading()
            # Meanwhile another client downloads the same build whole.
            reader, _ = await online_client(site, "reads")
            other = order_for(data, 2)
            await ordered(site, reader, other)
            assert await receive(reader, other) == data

            def results() -> list[CommandResult]:
                return [r for c, r in site.sink.results if c == identity.client_id]

            await site.sink.wait_for(lambda: bool(results()), timeout=stall + 10)
            [result] = results()
            assert (result.command_id, result.outcome) == (command.command_id, "failed")
            assert "stalled" in result.detail and f"{stall:g} s" in result.detail
            assert "retry" in result.detail
            assert identity.client_id not in site.gateway.online
            assert site.gateway.counters["builds_failed"] == 1

    run(scenario(), timeout=60)


def test_a_connection_that_ends_during_its_download_fails_that_upgrade(
    pki: Pki, tmp_path: Path
) -> None:
    data = a_release(tmp_path, 8 * MIB)

    async def scenario() -> None:
        async with serving(pki, data_dir=tmp_path, upgrade_bandwidth_mib=4) as site:
            identity = site.enrol("goes-away")
            command = order_for(data)
            link = await asking(site, identity, command)
            await asyncio.sleep(0.5)  # a part of it has come
            link.drop("the endpoint lost its network")
            await site.sink.wait_for(lambda: bool(site.sink.results))
            [(client_id, result)] = site.sink.results
            assert (client_id, result.command_id) == (identity.client_id, command.command_id)
            assert result.outcome == "failed" and result.detail.startswith(
                "its connection ended during its download of the build; resume the rollout"
            )

    run(scenario())


def test_a_protocol_1_client_is_still_told_where_to_fetch_the_build(
    pki: Pki, tmp_path: Path
) -> None:
    """A client of the earlier protocol reads the order in its own version, with the HTTPS
    path it fetches from; a build_request is a protocol-2 message it never sends."""
    data = a_release(tmp_path, 1024)

    async def scenario() -> None:
        async with serving(pki, data_dir=tmp_path) as site:
            identity = site.enrol("protocol-1")
            link = await bare_client(site, identity, Codec(version=1))
            path = f"/api/v1/jump-clients/builds/{hashlib.sha256(data).hexdigest()}?token=t"
            command = order_for(data)
            body = command.body.model_copy(update={"path": path})
            command = command.model_copy(update={"body": body})
            assert await site.port.publish(Deliver(identity.client_id, command))
            received = await link.receive(5.0)
            assert isinstance(received, Command) and received.v == 1
            assert isinstance(received.body, Upgrade) and received.body.path == path

    run(scenario())


def test_a_protocol_1_passive_client_can_still_be_woken() -> None:
    """A passive client one version behind must be woken to be upgraded: the site's wake
    is written in the version it reads."""

    async def scenario() -> str:
        guard, woken = WakeGuard("jc_older"), asyncio.Event()
        guard.key = wake_key(b"s" * 32, "jc_older")
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: WakeListener(guard, Codec(version=1), woken.set), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        try:
            call = make_wake(wake_key(b"s" * 32, "jc_older"), "jc_older", time.time())
            answer = await send_wake("127.0.0.1", port, call)
            await asyncio.wait_for(woken.wait(), 5)
            return answer
        finally:
            server.close()

    assert asyncio.run(scenario()) == "ok"


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda data: os.urandom(len(data)), "the build's SHA-256 is"),
        (lambda data: data[: 100 * 1024], "shorter than its recorded size"),
    ],
    ids=["other bytes", "cut short"],
)
def test_a_build_changed_on_the_site_after_it_was_hashed_is_refused_with_the_reason(
    pki: Pki, tmp_path: Path, damage: Callable[[bytes], bytes], why: str
) -> None:
    """Say a tampered or truncated disk: the client keeps nothing and says why, at once
    (not after its ten-minute quiet limit), and its connection goes on."""
    data = a_release(tmp_path, 300 * 1024)

    async def scenario() -> None:
        async with serving(pki, data_dir=tmp_path) as site:
            client, _ = await online_client(site, "checks")
            command = order_for(data)
            await ordered(site, client, command)
            build = current_build(tmp_path)
            assert build is not None
            await site.gateway._current_build()  # the gateway has hashed it
            build.path.write_bytes(damage(data))
            with pytest.raises(UpgradeError, match=re.escape(why)):
                async with asyncio.timeout(10):
                    await receive(client, command)
            assert client.identity.client_id in site.gateway.online

    run(scenario())


def test_a_download_longer_than_the_heartbeat_timeout_keeps_the_connection(
    pki: Pki, tmp_path: Path
) -> None:
    """No heartbeat goes either way while a client waits for and receives its build; once
    it has it, neither end takes the silence for a dead connection."""
    data = a_release(tmp_path, 2 * MIB)  # at 1 MiB/s: twice the heartbeat timeout

    async def scenario() -> None:
        settings = {"heartbeat_interval": 0.3, "heartbeat_timeout": 1.0, "sweep_interval": 0.1}
        async with serving(pki, data_dir=tmp_path, upgrade_bandwidth_mib=1, **settings) as site:
            identity, recorder = site.enrol("patient"), Recorder()
            client = site.client(identity, recorder)
            received: list[bytes] = []

            async def upgrade(command: Command) -> CommandResult:
                received.append(await receive(client, command))
                await asyncio.sleep(0.5)  # installing it: the client says nothing meanwhile
                return CommandResult(command_id=command.command_id, outcome="done")

            client.commands = upgrade
            site.start(client)
            await recorder.wait_for("welcomed")
            await ordered(site, client, order_for(data))
            await recorder.wait_for("commanded", timeout=15)
            await asyncio.sleep(1.5)  # past the timeout, counted from the download's end
            assert received == [data]
            assert not recorder.of("lost") and len(recorder.of("welcomed")) == 1
            assert identity.client_id in site.gateway.online

    run(scenario())
