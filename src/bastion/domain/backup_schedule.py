"""When a scheduled backup is due, and which old ones to delete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MIN_INTERVAL_HOURS = 1
MAX_INTERVAL_HOURS = 24 * 31
MAX_KEEP = 1000


class ScheduleError(ValueError):
    """A schedule was refused; the message says what is allowed."""


@dataclass(frozen=True)
class Schedule:
    interval_hours: int
    directory: str
    keep: int

    def __post_init__(self) -> None:
        if not MIN_INTERVAL_HOURS <= self.interval_hours <= MAX_INTERVAL_HOURS:
            raise ScheduleError(
                f"Choose an interval between {MIN_INTERVAL_HOURS} and {MAX_INTERVAL_HOURS} hours."
            )
        if not 1 <= self.keep <= MAX_KEEP:
            raise ScheduleError(f"Keep between 1 and {MAX_KEEP} backups.")
        if not self.directory.startswith("/"):
            raise ScheduleError("Give the target directory as an absolute path, e.g. /srv/backups.")


def is_due(
    schedule: Schedule, changed_at: datetime, last_run: datetime | None, now: datetime
) -> bool:
    """A new or changed schedule runs at once, then every `interval_hours`."""
    if last_run is None or last_run < changed_at:
        return True
    return now - last_run >= timedelta(hours=schedule.interval_hours)


def to_delete(names_oldest_first: list[str], keep: int) -> list[str]:
    """The backups beyond the newest `keep`."""
    return names_oldest_first[: max(0, len(names_oldest_first) - keep)]
