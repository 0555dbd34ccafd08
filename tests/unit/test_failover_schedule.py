"""When a backup appliance syncs by itself: about a minute after it joined, then every
interval; a primary or a lone appliance never pulls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bastion.failover.rules import Role
from bastion.failover.state import Pair, Peer
from bastion.failover.sync import due

JOINED = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PEER = Peer("10.0.0.1", 443, "ab" * 32)


def test_the_first_sync_is_about_a_minute_after_joining() -> None:
    joined = Pair(Role.BACKUP, PEER, JOINED.isoformat())
    assert not due(joined, JOINED + timedelta(seconds=59), 300)
    assert due(joined, JOINED + timedelta(seconds=60), 300)
    assert due(joined, JOINED + timedelta(seconds=2), 300, first_after=2)


def test_later_syncs_follow_the_interval_from_the_last() -> None:
    last = JOINED + timedelta(minutes=5)
    synced = Pair(Role.BACKUP, PEER, JOINED.isoformat(), last.isoformat(), "ok")
    assert not due(synced, last + timedelta(seconds=299), 300)
    assert due(synced, last + timedelta(seconds=300), 300)


def test_only_a_backup_pulls() -> None:
    later = JOINED + timedelta(days=1)
    assert not due(Pair(Role.PRIMARY, PEER, JOINED.isoformat()), later, 300)
    assert not due(Pair(), later, 300)


def test_after_a_swap_the_new_backup_counts_from_when_it_stepped_down() -> None:
    swapped = JOINED + timedelta(days=3)
    demoted = Pair(Role.BACKUP, PEER, JOINED.isoformat(), role_since=swapped.isoformat())
    assert not due(demoted, swapped + timedelta(seconds=59), 300)
    assert due(demoted, swapped + timedelta(seconds=60), 300)
