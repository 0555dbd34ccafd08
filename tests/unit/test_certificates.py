"""Certificate warnings, hostname coverage (RFC 6125), default choice and deletion rules."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.certificates.rules import (
    CertificateError,
    CertificateInfo,
    CertificateInUseError,
    DefaultCertificateRefusedError,
    KeyType,
    WarningKind,
    certificate_warnings,
    check_deletable,
    choose_default,
    covers_hostname,
    is_weak_key,
    name_matches,
    warning_kinds,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SITE = "support.example.com"

GOOD = CertificateInfo(
    subject="CN=support.example.com",
    san_names=("support.example.com",),
    issuer="CN=Example CA",
    not_before=NOW - timedelta(days=10),
    not_after=NOW + timedelta(days=300),
    key_type=KeyType.EC,
    key_size=256,
    fingerprint="ab" * 32,
    has_private_key=True,
    key_matches=True,
    chain_complete=True,
    chain_trusted=True,
)


def kinds(cert: CertificateInfo, now: datetime = NOW, host: str = SITE) -> set[WarningKind]:
    return warning_kinds(certificate_warnings(cert, now=now, site_hostname=host))


def test_a_good_certificate_has_no_warnings() -> None:
    assert certificate_warnings(GOOD, now=NOW, site_hostname=SITE) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"not_after": NOW - timedelta(seconds=1)}, WarningKind.EXPIRED),
        ({"not_before": NOW + timedelta(hours=1)}, WarningKind.NOT_YET_VALID),
        ({"not_after": NOW + timedelta(days=30)}, WarningKind.EXPIRING_SOON),
        ({"not_after": NOW + timedelta(days=1)}, WarningKind.EXPIRING_SOON),
        ({"san_names": ("www.example.com",)}, WarningKind.HOSTNAME_NOT_COVERED),
        ({"san_names": ()}, WarningKind.HOSTNAME_NOT_COVERED),
        ({"chain_complete": False, "chain_trusted": False}, WarningKind.CHAIN_INCOMPLETE),
        ({"chain_trusted": False}, WarningKind.CHAIN_NOT_TRUSTED),
        ({"has_private_key": False, "key_matches": False}, WarningKind.PRIVATE_KEY_MISSING),
        ({"key_matches": False}, WarningKind.PRIVATE_KEY_MISMATCH),
        ({"key_type": KeyType.RSA, "key_size": 1024}, WarningKind.WEAK_KEY),
        ({"key_type": KeyType.RSA, "key_size": 2047}, WarningKind.WEAK_KEY),
        ({"key_type": KeyType.EC, "key_size": 224}, WarningKind.WEAK_KEY),
        ({"key_type": KeyType.OTHER, "key_size": 2048}, WarningKind.WEAK_KEY),
    ],
)
def test_each_problem_gives_exactly_its_warning(
    changes: dict[str, object], expected: WarningKind
) -> None:
    assert kinds(replace(GOOD, **changes)) == {expected}  # type: ignore[arg-type]


def test_expiry_boundaries() -> None:
    assert kinds(replace(GOOD, not_after=NOW + timedelta(days=30, seconds=1))) == set()
    assert kinds(replace(GOOD, not_after=NOW)) == {WarningKind.EXPIRING_SOON}
    assert kinds(replace(GOOD, not_before=NOW)) == set()


def test_strong_keys_are_not_weak() -> None:
    assert not is_weak_key(KeyType.RSA, 2048)
    assert not is_weak_key(KeyType.RSA, 3072)
    assert not is_weak_key(KeyType.EC, 384)
    assert not is_weak_key(KeyType.ED25519, 256)


def test_messages_tell_what_to_do() -> None:
    bad = replace(GOOD, not_after=NOW - timedelta(days=2), san_names=("a.example.org",))
    messages = [w.message for w in certificate_warnings(bad, now=NOW, site_hostname=SITE)]
    assert any("Expired on 2026-11-21" in m and "renewed" in m for m in messages)
    assert any(SITE in m and "a.example.org" in m for m in messages)


# -- hostname coverage (RFC 6125 6.4) -------------------------------------------


@pytest.mark.parametrize(
    ("presented", "host", "expected"),
    [
        ("support.example.com", "support.example.com", True),
        ("SUPPORT.Example.COM", "support.example.com", True),
        ("support.example.com.", "support.example.com", True),
        ("*.example.com", "support.example.com", True),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.com", "example.com", False),
        ("*", "localhost", False),
        ("a.*.example.com", "a.b.example.com", False),
        ("*.*.example.com", "a.b.example.com", False),
        ("f*.example.com", "foo.example.com", False),
        ("support.example.com", "other.example.com", False),
        ("10.0.0.5", "10.0.0.5", True),
        ("10.0.0.5", "10.0.0.6", False),
        ("*.0.0.5", "10.0.0.5", False),
        ("2001:db8::1", "2001:DB8:0::1", True),
        ("2001:db8::1", "[2001:db8::1]", True),
        ("support.example.com", "10.0.0.5", False),
        ("", "support.example.com", False),
    ],
)
def test_name_matching(presented: str, host: str, expected: bool) -> None:
    assert name_matches(presented, host) is expected


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(first=LABEL, rest=st.lists(LABEL, min_size=1, max_size=3))
def test_wildcard_covers_exactly_one_label(first: str, rest: list[str]) -> None:
    domain = ".".join([*rest, "test"])
    assert name_matches(f"*.{domain}", f"{first}.{domain}")
    assert not name_matches(f"*.{domain}", domain)
    assert not name_matches(f"*.{domain}", f"{first}.{first}.{domain}")


@given(host=st.lists(LABEL, min_size=1, max_size=5).map(lambda labels: ".".join(labels)))
def test_exact_name_always_covers_itself(host: str) -> None:
    assert name_matches(host, host) and name_matches(host.upper(), host)


@given(names=st.lists(st.lists(LABEL, min_size=1, max_size=4).map(".".join), max_size=5))
def test_covered_iff_some_name_matches(names: list[str]) -> None:
    cert = replace(GOOD, san_names=tuple(names))
    assert covers_hostname(cert, SITE) is any(name_matches(n, SITE) for n in names)
    assert (WarningKind.HOSTNAME_NOT_COVERED in kinds(cert)) is not covers_hostname(cert, SITE)


@given(offset=st.integers(min_value=-3000, max_value=3000).map(lambda h: timedelta(hours=h)))
def test_at_most_one_validity_warning(offset: timedelta) -> None:
    cert = replace(GOOD, not_before=NOW - timedelta(days=40), not_after=NOW + timedelta(days=40))
    validity = {
        WarningKind.EXPIRED,
        WarningKind.NOT_YET_VALID,
        WarningKind.EXPIRING_SOON,
    }
    found = kinds(cert, now=NOW + offset) & validity
    assert len(found) <= 1
    at = NOW + offset
    soon = cert.not_before <= at <= cert.not_after and cert.not_after - at <= timedelta(days=30)
    assert (found == {WarningKind.EXPIRED}) is (at > cert.not_after)
    assert (found == {WarningKind.NOT_YET_VALID}) is (at < cert.not_before)
    assert (found == {WarningKind.EXPIRING_SOON}) is soon


# -- default choice and deletion -------------------------------------------------


def test_choosing_a_good_default() -> None:
    choice = choose_default(GOOD, now=NOW, site_hostname=SITE)
    assert choice.fingerprint == GOOD.fingerprint and choice.warnings == ()


def test_expired_default_needs_explicit_acceptance_and_keeps_its_warning() -> None:
    expired = replace(GOOD, not_after=NOW - timedelta(days=1))
    with pytest.raises(DefaultCertificateRefusedError, match="expired on"):
        choose_default(expired, now=NOW, site_hostname=SITE)
    choice = choose_default(expired, now=NOW, site_hostname=SITE, accept_expired=True)
    assert warning_kinds(choice.warnings) == {WarningKind.EXPIRED}


def test_other_warnings_do_not_block_the_default() -> None:
    untrusted = replace(GOOD, chain_trusted=False, san_names=("x.example.org",))
    choice = choose_default(untrusted, now=NOW, site_hostname=SITE)
    assert warning_kinds(choice.warnings) == {
        WarningKind.CHAIN_NOT_TRUSTED,
        WarningKind.HOSTNAME_NOT_COVERED,
    }


@pytest.mark.parametrize(
    "changes", [{"has_private_key": False, "key_matches": False}, {"key_matches": False}]
)
def test_default_needs_a_matching_private_key(changes: dict[str, bool]) -> None:
    with pytest.raises(DefaultCertificateRefusedError, match="private key"):
        choose_default(replace(GOOD, **changes), now=NOW, site_hostname=SITE, accept_expired=True)


def test_certificate_in_use_cannot_be_deleted() -> None:
    uses = {"the default certificate", "listener 10.0.0.5:443"}
    expected = re.escape("(listener 10.0.0.5:443; the default certificate)")
    with pytest.raises(CertificateInUseError, match=expected) as err:
        check_deletable(GOOD.fingerprint, uses)
    assert isinstance(err.value, CertificateError)
    check_deletable(GOOD.fingerprint, ())
