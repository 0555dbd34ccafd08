"""Network rules: how far the clock may drift from NTP, and what the Status page says of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

MAX_OFFSET_SECONDS = 5.0
WHERE_TO_SET = "Networking > IP Configuration"


class ClockLevel(StrEnum):
    OK = "ok"
    WARNING = "warning"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ClockStatus:
    level: ClockLevel
    message: str
    offset_seconds: float | None = None


class NtpProblem(StrEnum):
    """Why no offset could be measured, in the terms an administrator can act on."""

    NAME_UNKNOWN = "name_unknown"
    NO_DNS = "no_dns"
    NO_ANSWER = "no_answer"
    PORT_CLOSED = "port_closed"
    NO_ROUTE = "no_route"
    NOT_NTP = "not_ntp"
    UNSYNCHRONISED = "unsynchronised"
    OTHER = "other"


@dataclass(frozen=True)
class NtpFailure:
    problem: NtpProblem
    timeout_seconds: float = 0.0
    detail: str = ""
    """The system's own words, for a problem not named above."""


_MEANINGS: dict[NtpProblem, tuple[str, str]] = {
    NtpProblem.NAME_UNKNOWN: (
        "the NTP server name does not resolve",
        f"Check the name under {WHERE_TO_SET}, or give an IP address.",
    ),
    NtpProblem.NO_DNS: (
        "the NTP server name could not be looked up: no DNS server answered",
        f"Check the appliance's DNS settings, or give an IP address under {WHERE_TO_SET}.",
    ),
    NtpProblem.NO_ANSWER: (
        "no answer within {timeout:g} s",
        "Check that the server runs NTP and that UDP port 123 is open on the way to it.",
    ),
    NtpProblem.PORT_CLOSED: (
        "the server refused: nothing answers NTP on that port",
        f"Check the address (and port, if given) under {WHERE_TO_SET}.",
    ),
    NtpProblem.NO_ROUTE: (
        "there is no network route to it",
        "Check the appliance's network settings and gateway.",
    ),
    NtpProblem.NOT_NTP: (
        "its answer is not an NTP server's",
        f"Check that the address under {WHERE_TO_SET} is an NTP server.",
    ),
    NtpProblem.UNSYNCHRONISED: (
        "it is not synchronised itself (stratum 0)",
        "Choose another NTP server, or try again later.",
    ),
    NtpProblem.OTHER: ("{detail}", f"Check the address under {WHERE_TO_SET}."),
}


def describe_failure(failure: NtpFailure) -> tuple[str, str]:
    """What the failure means, and what to do about it."""
    meaning, advice = _MEANINGS[failure.problem]
    return meaning.format(timeout=failure.timeout_seconds, detail=failure.detail), advice


def assess_offset(server: str, offset: float | None, failure: NtpFailure | None) -> ClockStatus:
    """Turn a measured offset (or the reason none was measured) into words for the Status page."""
    if not server:
        return ClockStatus(ClockLevel.UNKNOWN, "No NTP server is configured.")
    if offset is None:
        if failure is None:
            return ClockStatus(ClockLevel.UNKNOWN, f"The NTP server {server} was not asked yet.")
        meaning, advice = describe_failure(failure)
        text = f"The NTP server {server} cannot be reached: {meaning}. {advice}"
        return ClockStatus(ClockLevel.UNKNOWN, text)
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
    """The last NTP measurement: offset in seconds, or the failure that prevented one."""

    server: str
    offset: float | None
    failure: NtpFailure | None
    measured_at: datetime | None
