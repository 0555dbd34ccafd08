from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bastion.backups.rules import Schedule, ScheduleError, is_due, to_delete

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAILY = Schedule(24, "/srv/backups", 7)


def test_a_new_schedule_runs_at_once() -> None:
    assert is_due(DAILY, T0, None, T0)


def test_then_it_waits_for_the_interval() -> None:
    assert not is_due(DAILY, T0, T0, T0 + timedelta(hours=23))
    assert is_due(DAILY, T0, T0, T0 + timedelta(hours=24))


def test_a_changed_schedule_runs_at_once_again() -> None:
    assert is_due(DAILY, T0 + timedelta(hours=1), T0, T0 + timedelta(hours=2))


def test_only_the_newest_are_kept() -> None:
    assert to_delete(["a", "b", "c", "d"], 2) == ["a", "b"]
    assert to_delete(["a"], 3) == []


@pytest.mark.parametrize(
    ("interval", "directory", "keep", "message"),
    [
        (0, "/srv", 1, "between 1 and"),
        (24, "relative", 1, "absolute path"),
        (24, "/srv", 0, "Keep between"),
    ],
)
def test_bad_schedules_say_what_is_allowed(
    interval: int, directory: str, keep: int, message: str
) -> None:
    with pytest.raises(ScheduleError, match=message):
        Schedule(interval, directory, keep)
