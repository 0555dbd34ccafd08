"""The gateway with real agents: real TLS on loopback, the real protocol code on both ends."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bastion.agents.connection import AgentLink
from bastion.agents.errors import TransportError, TrustError
from bastion.agents.identity import EndpointIdentity
from bastion.agents.protocol import (
    Challenge,
    CheckIn,
    Command,
    Error,
    Hello,
    RetryAfter,
    StartSession,
    Welcome,
    decode_bytes,
    encode_bytes,
)
from bastion.agents.wake import make_wake, send_wake, wake_key
from bastion.entrypoints import gateway as gateway_process
from bastion.failover.state import PAIR_FILE
from bastion.jump_clients.presence import MemoryPresenceSink, PresenceBatch
from bastion.jump_clients.routing import Deliver, Disconnect
from tests.support.jump_clients import SITE, WAKE_SECRET, Pki, Recorder, Site, run, serving

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


async def connect(site: Site) -> AgentLink:
    return await site.connect()


def hello_for(identity: EndpointIdentity, challenge: Challenge, mode: str = "active") -> Hello:
    signature = identity.sign_hello(SITE, decode_bytes(challenge.nonce))
    return Hello(
        client_id=identity.client_id,
        signature=encode_bytes(signature),
        agent_version="1.0.0",
        mode="active" if mode == "active" else "passive",
    )


async def next_message(link: AgentLink) -> object:
    return await link.receive(5.0)


async def sign_in(link: AgentLink, identity: EndpointIdentity) -> Hello:
    challenge = await next_message(link)
    assert isinstance(challenge, Challenge)
    hello = hello_for(identity, challenge)
    link.send(hello)
    assert isinstance(await next_message(link), Welcome)
    return hello


async def closed_with(link: AgentLink) -> str:
    """The reason the gateway gave when it closed `link`."""
    with pytest.raises(TransportError) as ended:
        while True:
            await link.receive(5.0)
    return str(ended.value)


def online(site: Site, client_id: str) -> bool:
    state = site.sink.clients.get(client_id)
    return state is not None and state.online


# -- the ordinary lives of clients -------------------------------------------------


def test_an_active_client_is_online_with_its_machines_statistics(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki, heartbeat_interval=0.2, heartbeat_timeout=2.0) as site:
            identity, recorder = site.enrol("active"), Recorder()
            site.start(site.client(identity, recorder))
            await recorder.wait_for("heartbeat", 3)
            await site.sink.wait_for(
                lambda: (
                    online(site, identity.client_id)
                    and site.sink.clients[identity.client_id].last_heartbeat is not None
                )
            )
            state = site.sink.clients[identity.client_id]
            assert state.statistics is not None and state.mode == "active"
            assert state.statistics.hostname == socket.gethostname()
            assert state.statistics.cpu.count == os.cpu_count()
            assert state.statistics.disks[0].path == "/" and state.statistics.uptime_seconds > 0
            assert site.sink.batches < 40  # batched: far fewer writes than heartbeats

    run(scenario())


def test_a_passive_client_checks_in_and_leaves(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki, passive_linger=0.1) as site:
            identity, recorder = site.enrol("passive", mode="passive"), Recorder()
            site.start(site.client(identity, recorder, mode="passive"))
            await recorder.wait_for("checked_in")
            await site.sink.wait_for(
                lambda: (
                    (state := site.sink.clients.get(identity.client_id)) is not None
                    and not state.online
                    and state.departed_at is not None
                )
            )
            state = site.sink.clients[identity.client_id]
            assert state.check_ins == 1 and state.statistics is not None
            assert state.departure == "checked in" and state.mode == "passive"
            assert not site.gateway.online

    run(scenario())


def test_a_wake_makes_a_passive_client_check_in_and_forged_wakes_do_not(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki, passive_linger=0.05) as site:
            identity, recorder = site.enrol("sleeper", mode="passive"), Recorder()
            client = site.client(identity, recorder, mode="passive", wake_address=("127.0.0.1", 0))
            site.start(client)
            await recorder.wait_for("checked_in")
            assert client.wake_port is not None
            key = wake_key(WAKE_SECRET, identity.client_id)
            forged = make_wake(
                wake_key(b"another secret", identity.client_id), identity.client_id, time.time()
            )
            assert (await send_wake("127.0.0.1", client.wake_port, forged)).startswith("refused")
            call = make_wake(key, identity.client_id, time.time())
            assert await send_wake("127.0.0.1", client.wake_port, call) == "ok"
            await recorder.wait_for("checked_in", 2)
            replayed = await send_wake("127.0.0.1", client.wake_port, call)
            assert replayed.startswith("refused") and "replay" in replayed
            await asyncio.sleep(0.3)
            assert len(recorder.of("checked_in")) == 2
            await site.sink.wait_for(lambda: site.sink.clients[identity.client_id].check_ins == 2)

    run(scenario())


def test_a_command_reaches_the_process_holding_the_client(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki, processes=2, sharing="reuseport") as site:
            recorders = {}
            for n in range(6):
                identity, recorder = site.enrol(f"routed-{n}"), Recorder()
                recorders[identity.client_id] = recorder
                site.start(site.client(identity, recorder))
            for recorder in recorders.values():
                await recorder.wait_for("welcomed")
            for client_id in recorders:
                command = Command(command_id=f"c-{client_id[-6:]}", body=CheckIn())
                assert await site.port.publish(Deliver(client_id, command))
            session = Command(
                command_id="s-1",
                body=StartSession(session_id="s1", rendezvous="x:1", token="A" * 43),
            )
            first = next(iter(recorders))
            assert await site.port.publish(Deliver(first, session))
            for client_id, recorder in recorders.items():
                results = await recorder.wait_for("commanded", 2 if client_id == first else 1)
                assert results[0].outcome == "done"
            assert recorders[first].of("commanded")[1].outcome == "unsupported"
            await site.sink.wait_for(lambda: len(site.sink.results) == 7)
            assert not await site.port.publish(Deliver("jc_nobody", session))
            assert sum(len(g.online) for g in site.gateways) == 6

    run(scenario())


# -- refusals ----------------------------------------------------------------------


def test_revoked_and_unknown_clients_are_told_to_stay_away(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki) as site:
            revoked, unknown = site.enrol("revoked", revoked=True), site.enrol("unknown")
            site.directory.records.pop(unknown.client_id)
            for identity in (revoked, unknown):
                answer = await site.client(identity, Recorder()).connect_once()
                assert isinstance(answer, RetryAfter)
                assert answer.reason == ("revoked" if identity is revoked else "unknown_client")
                assert answer.seconds > 3000 and "reinstall" in answer.detail
            assert site.gateway.counters["revoked"] == 1 and not site.gateway.online

    run(scenario())


def test_an_online_client_that_is_revoked_is_disconnected(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki) as site:
            identity, recorder = site.enrol("to-revoke"), Recorder()
            site.start(site.client(identity, recorder))
            await site.sink.wait_for(lambda: online(site, identity.client_id))
            site.directory.revoke(identity.client_id)
            assert await site.port.publish(
                Disconnect(identity.client_id, "revoked", 86400.0, "removed from the site")
            )
            (answer,) = await recorder.wait_for("refused")
            assert answer.reason == "revoked" and answer.seconds == 86400.0
            await site.sink.wait_for(lambda: not online(site, identity.client_id))

    run(scenario())


def test_a_client_trusting_other_anchors_cannot_connect(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki) as site:
            identity = site.enrol("foreign")
            client = site.client(identity, Recorder(), anchors=pki.foreign_anchors)
            with pytest.raises(TrustError, match="TLS verification failed") as failed:
                await client.connect_once()
            assert "trust anchor" in str(failed.value) and not site.gateway.online

    run(scenario())


def test_malformed_and_oversized_frames_are_answered_and_others_served(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki, heartbeat_interval=0.2, heartbeat_timeout=2.0) as site:
            good, recorder = site.enrol("good"), Recorder()
            site.start(site.client(good, recorder))
            for frame, code in [
                ("{not json", "malformed"),
                (json.dumps({"v": 1, "type": "hello", "client_id": 5}), "malformed"),
                (json.dumps({"v": 9, "type": "bye"}), "unsupported_version"),
                ("x" * 70_000, "too_large"),
            ]:
                link = await connect(site)
                assert isinstance(await next_message(link), Challenge)
                assert link.send_text(frame)
                error = await next_message(link)
                assert isinstance(error, Error) and error.code == code, error
                await closed_with(link)
            huge = await connect(site)
            huge.send_text("y" * 400_000)  # beyond what the framing even buffers
            assert "1009" in await closed_with(huge) or huge.core.close_rcvd is not None
            beats = len(recorder.of("heartbeat"))
            await recorder.wait_for("heartbeat", beats + 2)
            counters = site.gateway.counters
            assert counters["refused_malformed"] == 2 and counters["refused_too_large"] == 1
            assert counters["refused_unsupported_version"] == 1

    run(scenario())


def test_a_replayed_hello_signature_is_refused(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki) as site:
            identity = site.enrol("replayed")
            first = await connect(site)
            hello = await sign_in(first, identity)
            first.send(hello)  # the same hello again on its own connection
            error = await next_message(first)
            assert isinstance(error, Error) and error.code == "unexpected"
            await closed_with(first)
            second = await connect(site)
            assert isinstance(await next_message(second), Challenge)
            second.send(hello)  # a signature over another connection's challenge
            error = await next_message(second)
            assert isinstance(error, Error) and error.code == "authentication_failed"
            assert "1008" in await closed_with(second) or second.core.close_rcvd is not None
            assert site.gateway.counters["refused_authentication_failed"] == 1

    run(scenario())


def test_a_client_that_stops_reading_is_dropped_not_buffered(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki, max_write_buffer=64 * 1024) as site:
            identity = site.enrol("slow")
            link = await connect(site)
            await sign_in(link, identity)
            assert link.transport is not None
            link.transport.pause_reading()
            body = StartSession(session_id="s", rendezvous="r" * 250, token="A" * 43)
            sent = 0
            while identity.client_id in site.gateway.online and sent < 20_000:
                await site.port.publish(
                    Deliver(identity.client_id, Command(command_id=f"c{sent}", body=body))
                )
                sent += 1
                if sent % 50 == 0:
                    await asyncio.sleep(0.001)
            assert identity.client_id not in site.gateway.online, f"still online after {sent}"
            assert site.gateway.counters["slow_readers"] == 1
            await site.sink.wait_for(  # the client may not be in a flushed batch yet
                lambda: (
                    "stopped reading"
                    in getattr(site.sink.clients.get(identity.client_id), "departure", "")
                )
            )

    run(scenario())


def test_a_silent_client_is_marked_offline_after_the_heartbeat_timeout(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(
            pki, heartbeat_interval=0.2, heartbeat_timeout=0.6, sweep_interval=0.1
        ) as site:
            identity = site.enrol("silent")
            link = await connect(site)
            await sign_in(link, identity)
            await site.sink.wait_for(lambda: online(site, identity.client_id))
            started = time.monotonic()
            await site.sink.wait_for(lambda: not online(site, identity.client_id))
            assert time.monotonic() - started > 0.5
            assert site.sink.clients[identity.client_id].departure == "no heartbeat in time"

    run(scenario())


# -- the connection rate and backoff ----------------------------------------------


class ArrivalTimes(MemoryPresenceSink):
    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    async def write(self, batch: PresenceBatch) -> None:
        self.arrivals += [u.arrived_at for u in batch.updates if u.arrived_at is not None]
        await super().write(batch)


def test_a_flood_beyond_the_rate_is_told_when_to_return_and_comes_back_at_the_rate(
    pki: Pki,
) -> None:
    async def scenario() -> None:
        clients, rate = 30, 10.0
        async with serving(pki, connection_rate=rate, burst=0.1, admission_hold=0.5) as site:
            site.sink = ArrivalTimes()
            for gateway in site.gateways:
                gateway.flusher.sink = site.sink
            recorders = [Recorder() for _ in range(clients)]
            started = time.monotonic()
            for n, recorder in enumerate(recorders):
                site.start(site.client(site.enrol(f"flood-{n}"), recorder))
            for recorder in recorders:
                await recorder.wait_for("welcomed", timeout=15.0)
            took = time.monotonic() - started
            refused = [r for r in recorders if r.of("refused")]
            held = site.gateway.counters["held"]
            assert held >= 4 and len(refused) >= clients - held - 3  # burst 1, 0.5 s held
            for recorder in refused:  # the client waited at least what it was told
                (refused_at, _, answer), *_ = [e for e in recorder.events if e[1] == "refused"]
                welcomed_at = next(t for t, kind, _ in recorder.events if kind == "welcomed")
                assert answer.reason == "rate_limited"
                assert welcomed_at - refused_at >= answer.seconds
            assert took >= (clients - 2) / rate  # nobody got in ahead of the rate
            await site.sink.wait_for(lambda: len(site.sink.arrivals) == clients)
            arrivals = sorted(site.sink.arrivals)
            for first in arrivals:
                assert sum(1 for t in arrivals if first <= t < first + 1.0) <= rate + 2

    run(scenario())


def test_clients_back_on_the_build_they_were_told_to_install_skip_the_rate(pki: Pki) -> None:
    """After an install the whole fleet reconnects at the rate; clients returning from an
    upgrade must not queue behind it (they hold the rollout's places meanwhile)."""

    async def scenario() -> None:
        async with serving(pki, connection_rate=1.0, burst=0.1, admission_hold=0.2) as site:
            first = Recorder()
            site.start(site.client(site.enrol("reconnecting"), first))
            await first.wait_for("welcomed")  # the rate's one place this second is taken

            def told_to_upgrade(name: str, running: str) -> Recorder:
                identity = site.enrol(name)
                record = site.directory.records[identity.client_id]
                site.directory.add(replace(record, upgrading_to="2.0.0"))
                recorder = Recorder()
                site.start(site.client(identity, recorder, agent_version=running))
                return recorder

            returning = [told_to_upgrade(f"returning-{n}", "2.0.0") for n in range(8)]
            # Told to upgrade, but back on the old build: paced as usual.
            behind = [told_to_upgrade(f"not-upgraded-{n}", "1.0.0") for n in range(2)]
            started = time.monotonic()
            for recorder in returning:
                await recorder.wait_for("welcomed", timeout=5.0)
            assert time.monotonic() - started < 2.0  # at 1/s, eight would need seven seconds
            assert not any(recorder.of("refused") for recorder in returning)
            for recorder in behind:
                await recorder.wait_for("welcomed", timeout=15.0)
            assert site.gateway.counters["upgrade_returns"] == 8  # not the two on 1.0.0

    run(scenario())


def test_a_changed_rate_and_statistics_interval_apply_without_a_restart(pki: Pki) -> None:
    async def scenario() -> None:
        clients = 12
        async with serving(pki, connection_rate=1.0, burst=0.1, admission_hold=0.2) as site:
            first = Recorder()
            site.start(site.client(site.enrol("before"), first))
            (welcome,) = await first.wait_for("welcomed")
            assert welcome.statistics_interval == site.gateway.config.statistics_interval
            # At 1/s, twelve clients would need eleven seconds or more.
            assert site.gateway.reconfigure(connection_rate=200.0, statistics_interval=45.0)
            assert not site.gateway.reconfigure(connection_rate=200.0, statistics_interval=45.0)
            recorders = [Recorder() for _ in range(clients)]
            started = time.monotonic()
            for n, recorder in enumerate(recorders):
                site.start(site.client(site.enrol(f"after-{n}"), recorder))
            for recorder in recorders:
                await recorder.wait_for("welcomed", timeout=15.0)
            assert time.monotonic() - started < 5.0
            assert not any(recorder.of("refused") for recorder in recorders)
            assert {r.of("welcomed")[0].statistics_interval for r in recorders} == {45.0}

    run(scenario())


# -- the simulator, as its own process ----------------------------------------------


def test_the_fleet_simulator_process_brings_its_clients_online(pki: Pki) -> None:
    async def scenario() -> None:
        from bastion.jump_clients.simulator import FleetDirectory

        async with serving(pki, connection_rate=300.0, heartbeat_interval=0.5) as site:
            site.directory.records.update(FleetDirectory.derive("test-fleet", 40).records)
            command = [
                sys.executable, "-m", "bastion.jump_clients.simulator", "--port",
                str(site.listen_port), "--anchors", str(pki.anchors), "--seed", "test-fleet",
                "--count", "40", "--sources", "127.0.0.2,127.0.0.3", "--duration", "4",
                "--report-every", "1",
            ]  # fmt: skip
            process = await asyncio.create_subprocess_exec(
                *command, stdout=subprocess.PIPE, cwd=ROOT
            )
            output, _ = await process.communicate()
            reports = [json.loads(line) for line in output.splitlines()]
            assert process.returncode == 0
            assert max(r["online"] for r in reports) == 40
            assert sum(sum(r["round_trips_ms"].values()) for r in reports) >= 40
            addresses = {state.address for state in site.sink.clients.values()}
            assert addresses == {"127.0.0.2", "127.0.0.3"}

    run(scenario(), timeout=60)


class BrokenDirectory:
    async def lookup(self, client_id: str) -> None:
        raise OSError("the database is down")


def test_a_full_process_and_a_failing_directory_are_answered_with_retry_after(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with serving(pki, max_connections=1) as site:
            identity = site.enrol("first")
            holder = await connect(site)
            await sign_in(holder, identity)
            extra = await connect(site)  # the second connection while one is held
            answer = await next_message(extra)
            assert isinstance(answer, RetryAfter) and answer.reason == "capacity"
            await closed_with(extra)
            holder.close()
            await closed_with(holder)
            site.gateway.directory = BrokenDirectory()
            answer = await site.client(identity, Recorder()).connect_once()
            assert isinstance(answer, RetryAfter) and answer.reason == "unavailable"

    run(scenario())
    assert "directory failed" in caplog.text


def test_connections_beyond_the_pending_cap_wait_in_the_listening_queue(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki, max_pending=2, handshake_timeout=0.5) as site:
            silent = [socket.create_connection(("127.0.0.1", site.listen_port)) for _ in range(2)]
            await asyncio.sleep(0.2)
            acceptor = site.gateway._acceptor
            assert acceptor is not None and acceptor.pending == 2
            identity, recorder = site.enrol("patient"), Recorder()
            site.start(site.client(identity, recorder))
            await asyncio.sleep(0.2)
            assert not recorder.of("welcomed")  # waiting in the kernel's queue
            await recorder.wait_for("welcomed")
            # The patient client may take the slot the first silent one freed, before the
            # second's own timeout (a moment later) is counted.
            async with asyncio.timeout(5.0):
                while site.gateway.counters["tls_failed"] < 2 or acceptor.pending:
                    await asyncio.sleep(0.05)
            assert site.gateway.counters["tls_failed"] == 2
            for sock in silent:
                sock.close()

    run(scenario())


def test_a_gateway_standing_by_sends_its_clients_away_at_their_offsets(pki: Pki) -> None:
    """What a gateway does while its appliance is a failover backup: its clients are sent
    away, each at its own offset within the time the site's rate needs to admit them all
    (they reach the new primary through the site's name or address), and a newcomer is
    told to try again later; once it serves again, clients are welcome."""

    async def scenario() -> None:
        rate, clients = 10.0, 4
        async with serving(pki, connection_rate=rate) as site:
            recorders = [Recorder() for _ in range(clients)]
            for n, recorder in enumerate(recorders):
                site.start(site.client(site.enrol(f"standby-{n}"), recorder))
            for recorder in recorders:
                await recorder.wait_for("welcomed")
            sent_at = time.monotonic()
            assert site.gateway.stand_by(True) and not site.gateway.stand_by(True)
            assert site.gateway.counters["sent_to_primary"] == clients
            await site.sink.wait_for(lambda: not site.gateway.online)
            returns = []
            for recorder in recorders:
                # each is told when to come back (or, if the close overtook that, goes by
                # the offset its welcome gave); it comes back then, to be told to try later
                async with asyncio.timeout(10):
                    while not (back := refused_with(recorder, "unavailable")):
                        recorder.changed.clear()
                        await recorder.changed.wait()
                told = [a for _, a in refused_with(recorder, "shutting_down")]
                assert all("failover backup" in a.detail for a in told)
                returns.append(back[0][0] - sent_at)
            allowance = site.config.restart_allowance
            assert all(allowance - 0.1 <= s <= allowance + clients / rate + 1 for s in returns)
            assert max(returns) - min(returns) > 0.1, returns  # spread, not all at once

            newcomer = site.enrol("newcomer")
            answer = await site.client(newcomer, Recorder()).connect_once()
            assert isinstance(answer, RetryAfter) and answer.reason == "unavailable"
            assert answer.seconds >= 20 and "primary serves" in answer.detail

            assert site.gateway.stand_by(False)
            later = Recorder()
            site.start(site.client(newcomer, later))
            await later.wait_for("welcomed")

    run(scenario())


def refused_with(recorder: Recorder, reason: str) -> list[tuple[float, RetryAfter]]:
    return [(t, a) for t, kind, a in recorder.events if kind == "refused" and a.reason == reason]


def test_a_role_that_cannot_be_read_is_logged_once_and_read_again_later(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway process's watch of its appliance's failover role: a pair file that
    cannot be read is said once (not every check), the gateway keeps its stance, and it
    follows the role again once the file reads."""
    monkeypatch.setattr(gateway_process, "ROLE_CHECK_SECONDS", 0.01)
    pair_file = tmp_path / PAIR_FILE

    async def scenario() -> None:
        async with serving(pki) as site:
            watch = asyncio.create_task(gateway_process._watch_role(site.gateway, tmp_path))
            try:
                pair_file.write_text("{not json")
                await asyncio.sleep(0.5)  # about 50 checks
                assert not site.gateway.standing_by
                pair_file.write_text(json.dumps({"role": "backup"}))
                async with asyncio.timeout(5):
                    while not site.gateway.standing_by:
                        await asyncio.sleep(0.01)
            finally:
                watch.cancel()

    with caplog.at_level("INFO", logger=gateway_process.log.name):
        run(scenario())
    said = [r.getMessage() for r in caplog.records if r.name == gateway_process.log.name]
    assert said.count("could not read this appliance's failover role; keeping the current") == 1
    assert said.count("this appliance's failover role can be read again") == 1
