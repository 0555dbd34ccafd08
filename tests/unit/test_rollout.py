"""Rollout eligibility and wave notifications."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.update_service.rollout import (
    Customer,
    Schedule,
    SitePlacement,
    Verdict,
    notices_due,
    verdict,
    wave_is_open,
)

TODAY = dt.date(2026, 11, 23)
ACME = Customer("acme", "ops@acme.example", TODAY + dt.timedelta(days=30))
GONE = Customer("gone", "it@gone.example", TODAY - dt.timedelta(days=1))
S1 = SitePlacement("support.acme.example", "acme", wave=1)
S2 = SitePlacement("help.acme.example", "acme", wave=2)


def test_base_release_visible_to_open_wave() -> None:
    assert verdict(None, {1: TODAY}, S1, ACME, TODAY) is Verdict.VISIBLE


def test_site_release_only_for_its_site() -> None:
    assert verdict("other.example", {1: TODAY}, S1, ACME, TODAY) is Verdict.OTHER_SITE
    assert verdict(S1.site, {1: TODAY}, S1, ACME, TODAY) is Verdict.VISIBLE


def test_wave_not_open_until_its_date() -> None:
    tomorrow = TODAY + dt.timedelta(days=1)
    assert verdict(None, {1: tomorrow}, S1, ACME, TODAY) is Verdict.WAVE_NOT_OPEN
    assert verdict(None, {1: TODAY}, S2, ACME, TODAY) is Verdict.WAVE_NOT_OPEN


def test_opening_a_later_wave_opens_earlier_ones() -> None:
    assert wave_is_open({3: TODAY}, 1, TODAY)
    assert not wave_is_open({1: TODAY}, 3, TODAY)


def test_expired_contract_sees_nothing() -> None:
    gone_site = SitePlacement("x.gone.example", "gone", 1)
    assert verdict(None, {1: TODAY}, gone_site, GONE, TODAY) is Verdict.CONTRACT_ENDED


def test_contract_ending_today_is_current() -> None:
    last_day = Customer("last", "a@b.example", TODAY)
    assert last_day.contract_current(TODAY)


def test_notice_once_per_customer_when_wave_opens() -> None:
    gone_site = SitePlacement("x.gone.example", "gone", 1)
    extra = SitePlacement("extra.acme.example", "acme", 1)
    customers = {"acme": ACME, "gone": GONE}
    placements = [S1, S2, extra, gone_site]
    base = Schedule("base:1.1", None, {1: TODAY})
    site = Schedule("site:1.1@" + S2.site, S2.site, {1: TODAY})
    due = notices_due([base, site], placements, customers, set(), TODAY)
    assert due == {"acme": ["base:1.1"]}
    assert notices_due([base], placements, customers, {("base:1.1", "acme")}, TODAY) == {}


def test_notice_when_later_wave_opens() -> None:
    site = Schedule("site:1.1@" + S2.site, S2.site, {2: TODAY})
    assert notices_due([site], [S1, S2], {"acme": ACME}, set(), TODAY) == {"acme": [site.spec]}


@settings(deadline=None)
@given(
    st.dictionaries(st.integers(1, 5), st.dates(), max_size=5),
    st.integers(1, 5),
    st.dates(),
)
def test_open_waves_are_monotone(openings: dict[int, dt.date], wave: int, day: dt.date) -> None:
    if wave_is_open(openings, wave, day):
        assert all(wave_is_open(openings, w, day) for w in range(1, wave))
        if day < dt.date.max:
            assert wave_is_open(openings, wave, day + dt.timedelta(days=1))
