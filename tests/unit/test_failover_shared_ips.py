"""Shared IP addresses as an administrator writes them: ADDRESS/PREFIX@INTERFACE, and a
clear refusal of anything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.failover.shared_ips import parse, parse_all


def test_an_address_with_its_prefix_and_interface() -> None:
    item = parse(" 10.0.0.10/24@eth0 ")
    assert (item.ip, item.interface, str(item)) == ("10.0.0.10", "eth0", "10.0.0.10/24@eth0")
    assert parse("fd00::10/64@bond0.12").ip == "fd00::10"
    assert parse_all(["", "10.0.0.10/24@eth0"]) == [item]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("10.0.0.10/24", "name the interface"),
        ("10.0.0.10@eth0", "no prefix length"),
        ("10.0.0.300/24@eth0", "not an IP address"),
        ("10.0.0.10/24@" + "x" * 16, "name the interface"),
        ("10.0.0.10/24@eth0; reboot", "name the interface"),
        ("10.0.0.10/24@ü", "name the interface"),
    ],
)
def test_anything_else_is_refused_with_what_to_write(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse(text)


@given(st.text(max_size=60))
def test_any_text_parses_or_is_refused_with_a_value_error(text: str) -> None:
    try:
        item = parse(text)
    except ValueError:
        return
    assert item.interface.isascii() and " " not in item.interface
