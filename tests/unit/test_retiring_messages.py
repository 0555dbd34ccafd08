"""The messages that let a worker an install replaced keep its remote sessions: the
supervisor's orders to it, the live worker's requests to end or watch one it keeps, and
the status that tells an administrator it is still there; the live worker's tickets
for watches it relays from it, and its reading of the sessions it lists."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest

from bastion.access_console.protocol import LiveSessionInfo
from bastion.sessions.relay import KeptWatches
from bastion.sessions.watching import kept_infos
from bastion.supervisor import messages as m


@pytest.mark.parametrize(
    "order",
    [
        m.Retire(3600.0),
        m.Retire(0.0),
        m.EndSession("s-1", "ended by admin"),
        m.WatchTicket("s-1"),
        m.HoldsSession("s-1"),
        m.LiveSessions(),
    ],
)
def test_orders_travel_whole(order: m.Order) -> None:
    assert m.order_from_wire(order.path, m.order_to_wire(order)) == order


def test_a_retire_order_without_a_number_is_refused_with_what_is_wrong() -> None:
    with pytest.raises(m.MessageError, match="keep_seconds 'soon' is not a number"):
        m.order_from_wire(m.Retire.path, {"keep_seconds": "soon"})
    assert m.order_from_wire(m.Retire.path, {"keep_seconds": -5}) == m.Retire(0.0)


def test_ending_a_kept_session_travels_whole_and_needs_its_session() -> None:
    request = m.EndKeptSession("s-1", "ended by api:ops")
    assert m.request_from_wire(m.request_to_wire(request)) == request
    with pytest.raises(m.MessageError, match="not well formed"):
        m.request_from_wire({"op": m.EndKeptSession.op, "reason": "x"})


@pytest.mark.parametrize("kind", [m.WatchKeptSession, m.FindKeptSession])
def test_asking_after_a_kept_session_travels_whole_and_needs_its_session(
    kind: type[m.WatchKeptSession | m.FindKeptSession],
) -> None:
    request = kind("s-1")
    assert m.request_from_wire(m.request_to_wire(request)) == request
    with pytest.raises(m.MessageError, match="not well formed"):
        m.request_from_wire({"op": kind.op})
    listing = m.KeptLiveSessions()
    assert m.request_from_wire(m.request_to_wire(listing)) == listing


def test_a_relayed_watch_ticket_is_single_use_for_its_session_and_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watches = KeptWatches(lifetime=60)
    ours = watches.give("s-1", "bastion-x-worker-1", "theirs")
    assert ours != "theirs"
    assert watches.take("s-2", ours) is None  # another session's watch
    assert watches.take("s-1", "theirs") is None  # the old worker's ticket is not ours
    kept = watches.take("s-1", ours)
    assert kept is not None and (kept.socket, kept.token) == ("bastion-x-worker-1", "theirs")
    assert watches.take("s-1", ours) is None  # used
    late = watches.give("s-1", "bastion-x-worker-1", "theirs")
    now = time.monotonic()
    monkeypatch.setattr("bastion.sessions.relay.time.monotonic", lambda: now + 61)
    assert watches.take("s-1", late) is None


def test_the_status_names_the_workers_that_keep_sessions() -> None:
    kept = {"pid": 42, "slot": "site-1.0.0", "sessions": 2, "until": "2026-12-03T11:00:00+00:00"}
    status = m.SupervisorStatus(
        "idle", "1.0.0", workers={"live": {"pid": 7, "slot": "site-1.1.0"}, "retiring 42": kept}
    )
    again = m.SupervisorStatus.from_wire(status.to_wire())
    assert again.kept_sessions == [kept]


def test_kept_sessions_an_old_worker_describes_are_listed_and_unreadable_ones_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What `worker_control` answers to `LiveSessions` is read back whole; a description
    the new version cannot read (another shape, a bad id) is left out of the list and
    logged, and the others are still shown."""
    sent = LiveSessionInfo(
        session_id="s-1", title="rep on web-01", representative="rep", endpoint="web-01",
        started_at=datetime(2026, 12, 3, 12, 0, tzinfo=UTC), cols=80, rows=24, watchers=1,
    )  # fmt: skip
    unreadable = [
        {"session_id": "s-2"},
        {**sent.model_dump(mode="json"), "session_id": "../s-3"},
        {**sent.model_dump(mode="json"), "cols": "wide"},
    ]
    described = [unreadable[0], sent.model_dump(mode="json"), *unreadable[1:]]
    with caplog.at_level(logging.WARNING, logger="bastion.sessions"):
        assert kept_infos(described) == [sent]
    skipped = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(skipped) == 3
    assert "../s-3" not in caplog.text  # what was sent is not repeated into the log
