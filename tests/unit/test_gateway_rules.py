"""The gateway's pure parts: the admission gate and the presence table."""

from __future__ import annotations

import itertools
import random

import pytest

from bastion.agents.protocol import CommandResult, Cpu, Hello, Statistics, encode_bytes
from bastion.jump_clients.config import GatewayConfig
from bastion.jump_clients.errors import GatewayError
from bastion.jump_clients.presence import PresenceTable
from bastion.jump_clients.rate import AdmissionGate, spread


def test_the_gate_admits_its_burst_holds_the_next_and_refuses_beyond() -> None:
    gate = AdmissionGate.share(300.0, 3, burst=0.1, jitter=0.0, hold=0.505, now=0.0)
    assert gate.rate == 100.0 and gate.burst == 10.0
    turns = [gate.reserve(0.0) for _ in range(70)]
    assert turns[:10] == [0.0] * 10  # the burst, at once
    assert turns[10:60] == pytest.approx([0.01 * n for n in range(1, 51)])  # held, in turn
    assert turns[60:] == [None] * 10  # further than the hold: told to come back


def test_admissions_in_any_second_stay_under_rate_plus_burst() -> None:
    gate = AdmissionGate(rate=50.0, burst=5.0, hold=2.0)
    arrivals = [step / 500 for step in range(5000)]  # 500 arrivals a second for 10 s
    admitted = sorted(t + turn for t in arrivals if (turn := gate.reserve(t)) is not None)
    assert 500 <= len(admitted) <= 605
    for first in admitted:
        assert sum(1 for t in admitted if first <= t < first + 1.0) <= 55


def test_welcomes_reached_late_are_spread_to_rate_and_burst() -> None:
    gate = AdmissionGate(rate=100.0, burst=10.0, hold=2.0)
    welcomed, now = [], 50.0
    for _ in range(500):  # a backlog of 500 turns, all reached at the same moment
        welcomed.append(now + gate.pace(now))  # each gets its own slot
    assert welcomed[:10] == [50.0] * 10 and welcomed[10] == pytest.approx(50.01)
    for first in welcomed:
        assert sum(1 for t in welcomed if first <= t < first + 1.0) <= 110


def test_clients_turned_away_are_given_consecutive_slots_after_the_queue() -> None:
    gate, rng = AdmissionGate(rate=10.0, burst=1.0, jitter=0.0, hold=1.0), random.Random(0)
    while gate.reserve(100.0) is not None:
        pass  # the hold queue is full: the next turn is 1.1 s away
    waits = [gate.retry_in(100.0, rng) for _ in range(5)]
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])  # when the queue has room
    assert gate.retry_in(100.3, rng) == pytest.approx(0.3)  # still behind the others
    assert gate.reserve(100.1) == pytest.approx(1.0)  # the first slot is within the hold


def test_retry_jitter_stays_within_its_fraction_and_a_second() -> None:
    gate, rng = AdmissionGate(rate=1.0, burst=1.0, jitter=0.2, hold=0.0), random.Random(0)
    waits = [gate.retry_in(0.0, rng) for _ in range(200)]
    for n, wait in enumerate(waits, start=1):
        assert abs(wait - n) <= min(0.2 * n, 1.0)
    assert len({round(w, 6) for w in waits}) == 200  # jittered, not all on the slot


def test_the_reconnect_window_spreads_the_held_clients_at_the_rate() -> None:
    gate = AdmissionGate(rate=75.0, burst=7.5)
    assert gate.reconnect_window(15_000) == pytest.approx(200.0)
    assert gate.reconnect_window(0) == 0.0


@pytest.mark.parametrize("clients", [10, 100, 1000, 10_000])
def test_reconnect_offsets_fill_the_window_evenly_at_any_fleet_size(clients: int) -> None:
    offsets = sorted(spread(serial) for serial in range(clients))
    assert offsets[0] >= 0.0 and offsets[-1] < 1.0
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert max(gaps) < 3.0 / clients  # no hole: uniform random offsets leave ~ln(n)/n
    for tenth in range(10):
        inside = sum(1 for x in offsets if tenth / 10 <= x < (tenth + 1) / 10)
        assert abs(inside - clients / 10) <= 2


@pytest.mark.parametrize("rate", [0.0, -1.0, 301.0])
def test_the_connection_rate_is_bounded(rate: float) -> None:
    with pytest.raises(GatewayError, match="between 1 and 300"):
        GatewayConfig(site="s", connection_rate=rate)


def _hello(client_id: str) -> Hello:
    return Hello(
        client_id=client_id, signature=encode_bytes(bytes(64)), agent_version="1", mode="active"
    )


def _statistics(name: str) -> Statistics:
    return Statistics(hostname=name, fqdn=name, os="x", uptime_seconds=1.0, cpu=Cpu(count=1))


def test_many_heartbeats_become_one_record_per_client() -> None:
    table = PresenceTable("g1")
    table.arrived(_hello("jc_aaa"), "active", "127.0.0.1")
    for _ in range(100):
        table.heard("jc_aaa")
        table.heard("jc_bbb")
    batch = table.take()
    assert batch is not None and len(batch.updates) == 2
    assert table.take() is None


def test_a_check_in_and_departure_within_one_flush_keep_both_times() -> None:
    table = PresenceTable("g1")
    table.arrived(_hello("jc_aaa"), "passive", None)
    table.reported("jc_aaa", _statistics("pc"))
    table.departed("jc_aaa", "checked in")
    batch = table.take()
    assert batch is not None
    (update,) = batch.updates
    assert not update.online and update.arrived_at and update.departed_at
    assert update.statistics is not None and update.departure == "checked in"


def test_a_failed_batch_is_merged_under_newer_changes() -> None:
    table = PresenceTable("g1")
    table.arrived(_hello("jc_aaa"), "active", None)
    table.reported("jc_aaa", _statistics("old"))
    table.answered("jc_aaa", CommandResult(command_id="c1", outcome="done"))
    failed = table.take()
    assert failed is not None
    table.departed("jc_aaa", "no heartbeat in time")
    table.restore(failed)
    batch = table.take()
    assert batch is not None
    (update,) = batch.updates
    assert update.arrived_at is not None and not update.online
    assert update.statistics is not None and update.statistics.hostname == "old"
    assert [r.command_id for _, r in batch.results] == ["c1"]
