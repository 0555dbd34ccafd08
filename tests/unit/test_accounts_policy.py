from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.accounts.rules import (
    PASSWORD_RULES,
    AccountError,
    PasswordPolicyError,
    PasswordRule,
    check_password,
    password_hint,
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


BREAKS_ONE_RULE = [
    ("Ab3$xyz", "alice", None),
    ("abcdefghij" * 26, "alice", None),
    ("letmein12345", "alice", None),
    ("my-alice-password-1", "alice", None),
    ("aaaaaaaaaaaaaaaa", "alice", None),
    ("correct horse battery", "alice", "correct horse battery"),
]


@pytest.mark.parametrize(
    ("rule", "example"), list(zip(PASSWORD_RULES, BREAKS_ONE_RULE, strict=True))
)
def test_each_rule_refuses_with_its_own_problem_and_is_in_the_hint(
    rule: PasswordRule, example: tuple[str, str, str | None]
) -> None:
    password, username, current = example
    assert password_problems(password, username, current) == [rule.problem]
    assert rule.hint in password_hint(changing_own=True).lower()
    assert (rule.hint in password_hint().lower()) is not rule.only_when_changing


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
