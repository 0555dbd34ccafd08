from __future__ import annotations

import pytest

from bastion.network.rules import (
    ClockLevel,
    NtpFailure,
    NtpProblem,
    assess_offset,
    describe_failure,
)
from bastion.supervisor.sockets import ListenAddress, ListenAddressError, parse_listen_address


def test_an_offset_within_five_seconds_is_fine() -> None:
    assert assess_offset("ntp.example", 4.9, None).level is ClockLevel.OK


def test_an_offset_over_five_seconds_warns_with_the_offset() -> None:
    status = assess_offset("ntp.example", -7.25, None)
    assert status.level is ClockLevel.WARNING
    assert "-7.2 s" in status.message or "-7.3 s" in status.message


def test_an_unreachable_server_is_named_with_the_reason() -> None:
    status = assess_offset("ntp.example", None, NtpFailure(NtpProblem.NO_ANSWER, 0.5))
    assert status.level is ClockLevel.UNKNOWN
    assert "The NTP server ntp.example cannot be reached: no answer within 0.5 s." in status.message


@pytest.mark.parametrize("problem", list(NtpProblem))
def test_every_ntp_failure_says_what_it_means_and_what_to_do(problem: NtpProblem) -> None:
    failure = NtpFailure(problem, 2.0, detail="Operation not permitted")
    message = assess_offset("ntp.example", None, failure).message
    meaning, advice = describe_failure(failure)
    assert message == f"The NTP server ntp.example cannot be reached: {meaning}. {advice}"
    assert meaning and advice.endswith(".") and "{" not in message and "Errno" not in message


def test_a_name_that_does_not_resolve_is_said_so() -> None:
    status = assess_offset("ntp.invalid", None, NtpFailure(NtpProblem.NAME_UNKNOWN))
    assert "ntp.invalid cannot be reached: the NTP server name does not resolve." in status.message


def test_no_server_configured_is_said_plainly() -> None:
    assert assess_offset("", None, None).message == "No NTP server is configured."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.2:8443", ListenAddress("127.0.0.2", 8443)),
        (" 10.0.0.1:443 ", ListenAddress("10.0.0.1", 443)),
        ("[::1]:8443", ListenAddress("::1", 8443)),
    ],
)
def test_listen_addresses_parse(text: str, expected: ListenAddress) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("8443", "is not ADDR:PORT"),
        ("example.com:443", "not an IP address"),
        ("127.0.0.1:0", "between 1 and 65535"),
        ("127.0.0.1:99999", "between 1 and 65535"),
        ("127.0.0.1:http", "between 1 and 65535"),
    ],
)
def test_bad_listen_addresses_say_how_to_write_one(text: str, fragment: str) -> None:
    with pytest.raises(ListenAddressError, match=fragment):
        parse_listen_address(text)


def test_ipv6_addresses_print_with_brackets() -> None:
    assert str(ListenAddress("::1", 8443)) == "[::1]:8443"
