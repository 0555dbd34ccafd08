"""The failover rules without I/O: the key's challenge and response, and what a pair may
be established with."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bastion.failover import rules

KEY, OTHER = b"k" * 32, b"o" * 32


def test_a_stamp_holds_only_for_its_key_purpose_and_lifetime() -> None:
    token = rules.stamp(KEY, "challenge", 1000, "abc")
    assert rules.stamp_valid(KEY, "challenge", token, 1030, 60)
    assert not rules.stamp_valid(OTHER, "challenge", token, 1030, 60)
    assert not rules.stamp_valid(KEY, "ticket", token, 1030, 60)
    assert not rules.stamp_valid(KEY, "challenge", token, 1061, 60)
    assert not rules.stamp_valid(KEY, "challenge", token, 998, 60)  # from the future


@given(st.text(max_size=300))
def test_no_made_up_token_is_valid(token: str) -> None:
    assert not rules.stamp_valid(KEY, "ticket", token, 1000, 300)


SERVED, IN_BETWEEN = "ab" * 32, "cd" * 32


def test_each_side_proves_the_key_over_the_same_challenge_nonce_and_certificate() -> None:
    caller = rules.caller_proof(KEY, "c", "n", SERVED)
    assert rules.proof_matches(caller, rules.caller_proof(KEY, "c", "n", SERVED))
    assert not rules.proof_matches(caller, rules.caller_proof(OTHER, "c", "n", SERVED))
    assert not rules.proof_matches(caller, rules.answer_proof(KEY, "c", "n", SERVED))  # reflected


def test_a_proof_made_for_another_certificate_or_unbound_is_no_proof_for_this_one() -> None:
    """What a caller proved to something in between (which served its own certificate)
    cannot be passed on to the appliance, nor turned into the unbound form."""
    relayed = rules.caller_proof(KEY, "c", "n", IN_BETWEEN)
    assert not rules.proof_matches(rules.caller_proof(KEY, "c", "n", SERVED), relayed)
    unbound = rules.caller_proof(KEY, "c", "n", "")
    assert not rules.proof_matches(rules.caller_proof(KEY, "c", "n", SERVED), unbound)
    answer = rules.answer_proof(KEY, "c", "n", SERVED)
    assert not rules.proof_matches(rules.answer_proof(KEY, "c", "n", IN_BETWEEN), answer)


def test_the_key_must_be_long_enough_and_printable() -> None:
    assert rules.key_problems("x" * 15)
    assert rules.key_problems(" " + "x" * 20)
    assert rules.key_problems("x" * 20 + "\n")
    assert rules.key_problems("x" * 1025)
    assert rules.key_problems("a shared inter-appliance key") == []


def test_the_shared_site_hostname_is_refused_in_either_field() -> None:
    for field in ("backup", "reverse"):
        found = rules.address_problems(field, "Site.Example.", 443, "site.example")
        assert found and "shared site hostname" in found[0] and field in found[0]
    assert rules.address_problems("backup", "10.0.0.2", 443, "site.example") == []
    assert rules.address_problems("backup", "b1.example", 443, "site.example") == []
    assert rules.address_problems("backup", "::1", 8443, "site.example") == []
    assert rules.address_problems("backup", "", 443, "site.example")
    assert rules.address_problems("backup", "not a host", 443, "site.example")
    assert rules.address_problems("backup", "10.0.0.2", 0, "site.example")
    assert rules.address_problems("backup", "10.0.0.2", 70000, "site.example")


def test_versions_must_match_and_clocks_agree() -> None:
    assert rules.version_problem("1.2.0", "1.2.0", "B") is None
    found = rules.version_problem("1.2.0", "1.3.0", "B")
    assert found and "1.3.0" in found and "same version" in found
    assert rules.clock_problem(1000.0, 1029.0, "B") is None
    late = rules.clock_problem(1000.0, 900.0, "B")
    assert late and "100 s behind" in late


def test_failover_needs_a_database_with_a_change_journal() -> None:
    assert rules.database_problem("sqlite") is None
    assert rules.database_problem("postgresql") is None
    found = rules.database_problem("mysql")
    assert found and "PostgreSQL" in found and "mysql" in found
