"""Automatic failover's clock: how long the peer has not answered, counted from the
check that first found it gone, and only while every check since agrees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bastion.failover.state import PeerStatus
from bastion.failover.swap import unreachable_for

GONE = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def status(current: str, *history: tuple[str, datetime]) -> PeerStatus:
    entries = [{"since": at.isoformat(), "status": s, "peer_role": "", "message": ""}
               for s, at in history]  # fmt: skip
    return PeerStatus(GONE.isoformat(), current, "", "", entries)


def test_counted_from_the_first_check_that_found_the_peer_gone() -> None:
    checked = status("unreachable", ("unreachable", GONE), ("ok", GONE - timedelta(hours=1)))
    assert unreachable_for(checked, GONE + timedelta(seconds=42)) == 42
    assert unreachable_for(checked, GONE - timedelta(seconds=5)) == 0


def test_a_peer_that_answers_or_refuses_is_not_gone() -> None:
    for current in ("ok", "refused", "split brain", "left"):
        checked = status(current, (current, GONE), ("unreachable", GONE - timedelta(hours=1)))
        assert unreachable_for(checked, GONE + timedelta(hours=1)) == 0
    assert unreachable_for(PeerStatus(), GONE) == 0
