"""Network rules: how far the clock may drift from NTP, and what the Status page says of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

MAX_OFFSET_SECONDS = 5.0


class ClockLevel(StrEnum):
    OK = "ok"
    WARNING = "warning"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ClockStatus:
    level: ClockLevel
    message: str
    offset_seconds: float | None = None


def assess_offset(server: str, offset: float | None, error: str | None) -> ClockStatus:
    """Turn a measured offset (or the reason none was measured) into words for the Status page."""
    if not server:
        return ClockStatus(ClockLevel.UNKNOWN, "No NTP server is configured.")
    if offset is None:
        reason = error or "no answer yet"
        return ClockStatus(
            ClockLevel.UNKNOWN,
            f"The NTP server {server} cannot be reached ({reason}). Check the address under "
            "Networking > IP Configuration and that UDP port 123 is open.",
        )
    if abs(offset) > MAX_OFFSET_SECONDS:
        return ClockStatus(
            ClockLevel.WARNING,
            f"The appliance clock is {offset:+.1f} s off {server}; more than "
            f"{MAX_OFFSET_SECONDS:.0f} s breaks update downloads and failover. Correct the clock.",
            offset,
        )
    return ClockStatus(ClockLevel.OK, f"Within {abs(offset):.3f} s of {server}.", offset)


@dataclass(frozen=True)
class ClockReading:
    """The last NTP measurement: offset in seconds, or the error that prevented one."""

    server: str
    offset: float | None
    error: str | None
    measured_at: datetime | None
