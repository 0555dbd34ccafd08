"""Status > Basics: what runs, since when, and whether its clock can be trusted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.domain.clock import ClockStatus, assess_offset


@dataclass(frozen=True)
class ClockReading:
    """The last NTP measurement: offset in seconds, or the error that prevented one."""

    server: str
    offset: float | None
    error: str | None
    measured_at: datetime | None


@dataclass(frozen=True)
class Basics:
    product_version: str
    build: str
    base_version: str
    started_at: datetime
    now: datetime
    clock: ClockStatus
    clock_measured_at: datetime | None

    @property
    def uptime(self) -> timedelta:
        return self.now - self.started_at

    @property
    def uptime_text(self) -> str:
        seconds = int(self.uptime.total_seconds())
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{days}d {hours:02d}h {minutes:02d}m {seconds:02d}s"


def basics(
    product_version: str,
    build: str,
    base_version: str,
    started_at: datetime,
    now: datetime,
    reading: ClockReading,
) -> Basics:
    clock = assess_offset(reading.server, reading.offset, reading.error)
    return Basics(product_version, build, base_version, started_at, now, clock, reading.measured_at)
