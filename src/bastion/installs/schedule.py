"""When a requested install starts (R5): at once, after a delay, or at a maintenance window.

The page, the API and the console all ask the same way: an optional delay, or
an optional start time in UTC, never both. The supervisor compares start times
as UTC text, so every time handed on here is in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bastion.platform.clock import utc_now
from bastion.platform.errors import InvalidInputError

MAX_DELAY = timedelta(days=7)
LATE_BY = timedelta(minutes=1)
"""A start time this little in the past still means "now" (a form filled in slowly)."""


def parse_utc(text: str) -> datetime | None:
    """A start time as typed: ISO 8601, "YYYY-MM-DD HH:MM"; without a zone it is UTC."""
    text = text.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            f"{text!r} is not a time: give the start time in UTC as YYYY-MM-DD HH:MM."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_minutes(text: str) -> int:
    """A delay in whole minutes, as typed; empty means none."""
    text = text.strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(f"{text!r} is not a number of minutes.") from None


def start_time(
    delay_seconds: int = 0, at: datetime | None = None, now: datetime | None = None
) -> datetime | None:
    """When the install starts, in UTC; None for at once."""
    now = now or utc_now()
    if not 0 <= delay_seconds <= MAX_DELAY.total_seconds():
        days = MAX_DELAY.days
        raise InvalidInputError(f"Give a delay between 0 minutes and {days} days.")
    if at is None:
        return now + timedelta(seconds=delay_seconds) if delay_seconds else None
    if delay_seconds:
        raise InvalidInputError("Give either a delay or a start time, not both.")
    if at.tzinfo is None:
        raise InvalidInputError("Give the start time with its time zone, e.g. 22:00Z for UTC.")
    at = _in_utc(at)
    if at < now - LATE_BY:
        raise InvalidInputError(
            f"The start time {at:%Y-%m-%d %H:%M} UTC has passed; give a later one, or none "
            "to install now."
        )
    if at - now > MAX_DELAY:
        raise InvalidInputError(f"Give a start time within the next {MAX_DELAY.days} days.")
    return max(at, now)


def _in_utc(at: datetime) -> datetime:
    try:
        return at.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59-05:00 is past the last year there is
        raise InvalidInputError(
            f"The start time {at.isoformat()} is out of range; give one within the next "
            f"{MAX_DELAY.days} days."
        ) from None
