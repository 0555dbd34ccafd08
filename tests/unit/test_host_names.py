"""Certificate names are host names: IDNA A-labels, label and total lengths, allowed
characters, a wildcard only as the whole left-most label; refusals name the bad one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.certificates.rules import (
    MAX_HOST_NAME_LENGTH,
    MAX_LABEL_LENGTH,
    CertificateNameError,
    host_name,
    name_matches,
)


@pytest.mark.parametrize(
    ("given_name", "held"),
    [
        ("support.example.com", "support.example.com"),
        ("Support.Example.COM.", "support.example.com"),
        ("  localhost ", "localhost"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("straße.de", "xn--strae-oqa.de"),
        ("*.example.com", "*.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("192.0.2.10", "192.0.2.10"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_host_names_are_held_in_their_ascii_form(given_name: str, held: str) -> None:
    assert host_name(given_name) == held


@pytest.mark.parametrize(
    ("given_name", "why"),
    [
        ("a b", "holds ' '"),
        ("name!!", "holds '!'"),
        ("under_score.example", "holds '_'"),
        ("bad\x00.example", "holds '\\x00'"),
        ("🙂.example", "holds '🙂'"),
        ("a..b", "empty label"),
        (".example", "empty label"),
        ("-edge.example", "starts or ends with a hyphen"),
        ("x" * 64 + ".example", f"longer than {MAX_LABEL_LENGTH}"),
        ("*.com", "at least two labels after it"),
        ("www.*.example.com", "whole left-most label"),
        ("w*.example.com", "whole left-most label"),
        ("1.2.3", "only digits"),
        ("xn--a-.example", "starts or ends with a hyphen"),
        (".".join(["a" * 63] * 4), f"longer than {MAX_HOST_NAME_LENGTH}"),
    ],
)
def test_anything_else_is_refused_naming_the_name_and_why(given_name: str, why: str) -> None:
    with pytest.raises(CertificateNameError) as refused:
        host_name(given_name)
    message = str(refused.value)
    assert why in message and "is not a host name" in message
    assert repr(given_name[:80])[:20] in message


def test_a_very_long_name_is_shortened_in_the_message() -> None:
    with pytest.raises(CertificateNameError) as refused:
        host_name("a" * 10_000)
    assert len(str(refused.value)) < 400


labels = st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=20)


@given(st.lists(labels, min_size=1, max_size=6))
def test_whatever_is_accepted_is_plain_ascii_within_the_limits(parts: list[str]) -> None:
    try:
        held = host_name(".".join(parts))
    except CertificateNameError:
        return
    assert held.isascii() and held == held.lower() and len(held) <= MAX_HOST_NAME_LENGTH
    assert all(1 <= len(label) <= MAX_LABEL_LENGTH for label in held.split("."))
    assert host_name(held) == held  # the ASCII form is its own host name


def test_an_accepted_wildcard_covers_one_label_as_before() -> None:
    held = host_name("*.Bücher.example")
    assert name_matches(held, "shop.xn--bcher-kva.example")
    assert not name_matches(held, "a.b.xn--bcher-kva.example")
