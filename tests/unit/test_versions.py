"""Version ordering, release states and install order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.releases.versions import (
    DependencyError,
    Release,
    ReleaseKind,
    ReleaseState,
    Requirement,
    Version,
    VersionError,
    assess,
    install_order,
    offered,
    parse_requirement,
    parse_version,
)

BASE, SITE, LICENSE = ReleaseKind.BASE, ReleaseKind.SITE, ReleaseKind.LICENSE


def v(text: str) -> Version:
    return parse_version(text)


def rel(kind: ReleaseKind, version: str, *requires: str) -> Release:
    return Release(kind, v(version), tuple(parse_requirement(r) for r in requires))


def test_numeric_ordering_not_lexical() -> None:
    assert v("1.2.10") > v("1.2.9")
    assert v("1.10") > v("1.9")
    assert v("2") > v("1.99.99")


def test_trailing_zeros_are_equal() -> None:
    assert v("1.1") == v("1.1.0")
    assert hash(v("1.1")) == hash(v("1.1.0"))


@pytest.mark.parametrize("bad", ["", "1.", "a.b", "1..2", "-1", "1.2.3.4.5", "v1"])
def test_malformed_versions_are_refused(bad: str) -> None:
    with pytest.raises(VersionError):
        parse_version(bad)


def test_requirement_parses_and_prints() -> None:
    req = parse_requirement("base >= 1.1")
    assert req.kind is BASE and req.minimum == v("1.1")
    assert str(req) == "base>=1.1"
    with pytest.raises(VersionError):
        parse_requirement("kernel>=1")


def test_site_blocked_by_base_then_installable_after_base() -> None:
    base, site = rel(BASE, "1.1"), rel(SITE, "1.1", "base>=1.1")
    before = {a.release: a for a in assess({BASE: v("1.0"), SITE: v("1.0")}, [base, site])}
    assert before[base].state is ReleaseState.INSTALLABLE
    assert before[site].state is ReleaseState.BLOCKED
    assert before[site].blocked_by == (base,)
    assert "install base 1.1 first" in before[site].reason
    after = {a.release: a for a in assess({BASE: v("1.1"), SITE: v("1.0")}, [base, site])}
    assert after[base].state is ReleaseState.INSTALLED
    assert after[site].state is ReleaseState.INSTALLABLE


def test_lower_and_taken_are_not_offered() -> None:
    old, new, lic = rel(BASE, "0.9"), rel(BASE, "1.2"), rel(LICENSE, "3")
    result = assess({BASE: v("1.0")}, [old, new, lic], taken=[lic])
    states = {a.release: a.state for a in result}
    assert states[old] is ReleaseState.LOWER_THAN_INSTALLED
    assert states[lic] is ReleaseState.TAKEN
    assert [a.release for a in offered(result)] == [new]


def test_blocked_without_any_available_blocker() -> None:
    site = rel(SITE, "2.0", "base>=2.0")
    (only,) = assess({BASE: v("1.0")}, [site])
    assert only.state is ReleaseState.BLOCKED and only.blocked_by == ()
    assert "needs base>=2.0" in only.reason
    assert not only.resolvable


def test_blocked_by_an_available_release_is_resolvable() -> None:
    base, site = rel(BASE, "2.0"), rel(SITE, "2.0", "base>=2.0")
    assert all(a.resolvable for a in assess({BASE: v("1.0")}, [base, site]))


def test_install_order_puts_base_first() -> None:
    base, site = rel(BASE, "1.1"), rel(SITE, "1.1", "base>=1.1")
    assert install_order({BASE: v("1.0")}, [site, base]) == [base, site]


def test_install_order_names_what_is_missing() -> None:
    with pytest.raises(DependencyError, match=r"site 1.1 needs base>=1.1"):
        install_order({BASE: v("1.0")}, [rel(SITE, "1.1", "base>=1.1")])


versions = st.lists(st.integers(0, 30), min_size=1, max_size=4).map(
    lambda parts: Version(tuple(parts))
)
kinds = st.sampled_from(list(ReleaseKind))


@settings(deadline=None)
@given(versions, versions)
def test_order_matches_text_roundtrip(a: Version, b: Version) -> None:
    assert (a < b) == (parse_version(str(a)) < parse_version(str(b)))
    assert parse_version(str(a)) == a


@settings(deadline=None)
@given(versions, versions, versions)
def test_ordering_is_total_and_transitive(a: Version, b: Version, c: Version) -> None:
    assert (a < b) + (a == b) + (a > b) == 1
    if a <= b and b <= c:
        assert a <= c


@st.composite
def release_sets(draw: st.DrawFn) -> tuple[dict[ReleaseKind, Version], list[Release]]:
    installed = draw(st.dictionaries(kinds, versions, max_size=4))
    releases = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(kinds)
        reqs = draw(st.lists(st.tuples(kinds, versions), max_size=2))
        requires = tuple(Requirement(k, m) for k, m in reqs if k is not kind)
        releases.append(Release(kind, draw(versions), requires))
    return installed, releases


@settings(deadline=None)
@given(release_sets())
def test_install_order_respects_requirements(
    case: tuple[dict[ReleaseKind, Version], list[Release]],
) -> None:
    installed, pending = case
    try:
        order = install_order(installed, pending)
    except DependencyError:
        return
    assert sorted(order, key=repr) == sorted(set(pending), key=repr)
    state = dict(installed)
    for release in order:
        assert not release.missing(state)
        state[release.kind] = max(release.version, state.get(release.kind, release.version))


@settings(deadline=None)
@given(release_sets())
def test_every_release_gets_exactly_one_consistent_state(
    case: tuple[dict[ReleaseKind, Version], list[Release]],
) -> None:
    installed, available = case
    for a in assess(installed, available):
        have = installed.get(a.release.kind)
        if a.state is ReleaseState.INSTALLABLE:
            assert not a.release.missing(installed)
            assert have is None or a.release.version > have
        if a.state is ReleaseState.BLOCKED:
            assert a.missing and all(not m.is_met_by(installed) for m in a.missing)
        if a.state is ReleaseState.LOWER_THAN_INSTALLED:
            assert have is not None and a.release.version < have
