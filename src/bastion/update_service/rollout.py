"""Rollout eligibility: which site may see which release, and when.

Each site belongs to a customer and sits in a rollout wave (1, 2, 3, ...).
The vendor opens a release to wave *k* on a date; waves open in order, so a
release opened to wave *k* is also open to every wave below *k*. A site sees
a release when all of these hold:

* the release is built for it (base releases are for every site; site,
  licence and client releases name their site),
* the release is open to the site's wave on or before today,
* the customer's maintenance contract is current (ends today or later).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Customer:
    name: str
    email: str
    contract_end: dt.date

    def contract_current(self, today: dt.date) -> bool:
        return today <= self.contract_end


@dataclass(frozen=True)
class SitePlacement:
    """A site, its customer and its rollout wave."""

    site: str
    customer: str
    wave: int


class Verdict(StrEnum):
    VISIBLE = "visible"
    OTHER_SITE = "built for another site"
    WAVE_NOT_OPEN = "rollout wave not open yet"
    CONTRACT_ENDED = "maintenance contract ended"


def wave_open_date(openings: Mapping[int, dt.date], wave: int) -> dt.date | None:
    """The first date the release is open to ``wave`` (None if not scheduled)."""
    dates = [day for k, day in openings.items() if k >= wave]
    return min(dates, default=None)


def wave_is_open(openings: Mapping[int, dt.date], wave: int, today: dt.date) -> bool:
    opens = wave_open_date(openings, wave)
    return opens is not None and opens <= today


def built_for(release_site: str | None, site: str) -> bool:
    """Base releases (no site) are for all sites; others name their site."""
    return release_site is None or release_site == site


def verdict(
    release_site: str | None,
    openings: Mapping[int, dt.date],
    placement: SitePlacement,
    customer: Customer,
    today: dt.date,
) -> Verdict:
    """Why a site may or may not see a release today."""
    if not built_for(release_site, placement.site):
        return Verdict.OTHER_SITE
    if not customer.contract_current(today):
        return Verdict.CONTRACT_ENDED
    if not wave_is_open(openings, placement.wave, today):
        return Verdict.WAVE_NOT_OPEN
    return Verdict.VISIBLE


def is_visible(
    release_site: str | None,
    openings: Mapping[int, dt.date],
    placement: SitePlacement,
    customer: Customer,
    today: dt.date,
) -> bool:
    return verdict(release_site, openings, placement, customer, today) is Verdict.VISIBLE


@dataclass(frozen=True)
class Schedule:
    """A published release: the site it is built for and its wave openings."""

    spec: str
    site: str | None
    openings: Mapping[int, dt.date]


def notices_due(
    schedules: Iterable[Schedule],
    placements: Iterable[SitePlacement],
    customers: Mapping[str, Customer],
    already_told: Collection[tuple[str, str]],
    today: dt.date,
) -> dict[str, list[str]]:
    """Customer name -> releases newly visible to one of its sites and not yet announced.

    A customer is told once per release, when the release first becomes
    visible to one of its sites (its wave opened and its contract is current).
    """
    due: dict[str, list[str]] = {}
    sites = list(placements)
    for schedule in schedules:
        for placement in sites:
            customer = customers.get(placement.customer)
            if customer is None or (schedule.spec, customer.name) in already_told:
                continue
            if is_visible(schedule.site, schedule.openings, placement, customer, today):
                specs = due.setdefault(customer.name, [])
                if schedule.spec not in specs:
                    specs.append(schedule.spec)
    return due
