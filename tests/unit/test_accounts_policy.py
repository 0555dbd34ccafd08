from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.accounts.rules import (
    AccountError,
    PasswordPolicyError,
    check_password,
    password_problems,
    validate_username,
)
from bastion.platform.principals import Principal, Role


def test_a_long_varied_password_is_accepted() -> None:
    assert password_problems("correct horse battery", "alice") == []


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short1!", "at least 12"),
        ("password", "too common"),
        ("aaaaaaaaaaaaaaaa", "5 different"),
        ("my-alice-password-1", "must not contain the username"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(password: str, fragment: str) -> None:
    problems = password_problems(password, "alice")
    assert any(fragment in p for p in problems), problems


def test_the_new_password_must_differ_from_the_current_one() -> None:
    with pytest.raises(PasswordPolicyError, match="differ"):
        check_password("Tr0ub4dor&3-long", "bob", current="Tr0ub4dor&3-long")


def test_the_factory_password_is_never_accepted_as_a_new_one() -> None:
    assert password_problems("password", "admin")


@given(st.text(min_size=0, max_size=11))
def test_anything_shorter_than_twelve_characters_is_refused(password: str) -> None:
    assert password_problems(password, "carol")


@pytest.mark.parametrize("name", ["Alice", "bob.smith", "ops-1", "r_2"])
def test_usernames_are_normalised_to_lower_case(name: str) -> None:
    assert validate_username(name) == name.lower()


@pytest.mark.parametrize("name", ["", "a", "-lead", "has space", "x" * 65, "ümlaut"])
def test_invalid_usernames_say_what_is_allowed(name: str) -> None:
    with pytest.raises(AccountError, match="2 to 64 characters"):
        validate_username(name)


def test_only_administrators_administer() -> None:
    assert Principal("a", Role.ADMINISTRATOR).is_administrator
    assert not Principal("r", Role.REPRESENTATIVE).is_administrator
