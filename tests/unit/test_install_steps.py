"""Install steps, recovery decisions and estimates: pure rules, no processes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.installs.rules import Estimate, estimate, needs_licence, pause_seconds
from bastion.releases.versions import ReleaseKind, parse_version
from bastion.supervisor.journal import (
    BASE_STEPS,
    SITE_STEPS,
    HistoryEntry,
    InstallError,
    Journal,
    Outcome,
    PlannedRelease,
    Step,
    progress,
    recovery,
    rolled_back,
)


def journal(kind: ReleaseKind, step: Step, rollback: str | None = None) -> Journal:
    release = PlannedRelease(kind, parse_version("1.1"), "/pkg")
    return Journal("i1", release, f"{kind.value}-1.0", None, "now", step, rollback)


@pytest.mark.parametrize("step", SITE_STEPS)
def test_a_site_install_goes_back_before_the_switch_and_forward_after(step: Step) -> None:
    found = recovery(journal(ReleaseKind.SITE, step))
    switched = SITE_STEPS.index(step) >= SITE_STEPS.index(Step.SWITCHED)
    assert found.outcome is (Outcome.INSTALLED if switched else Outcome.ROLLED_BACK)
    snapshot_taken = SITE_STEPS.index(step) >= SITE_STEPS.index(Step.SNAPSHOT)
    assert found.restore_database is (snapshot_taken and not switched)
    if not switched:
        assert step.value in found.reason


@pytest.mark.parametrize("step", BASE_STEPS)
def test_a_base_install_stays_only_once_the_new_base_confirmed(step: Step) -> None:
    found = recovery(journal(ReleaseKind.BASE, step))
    assert found.rolls_back is (step is not Step.CONFIRMED)
    assert not found.restore_database


def test_a_rollback_under_way_is_finished_with_its_reason() -> None:
    found = recovery(journal(ReleaseKind.SITE, Step.SWITCHED, rollback="crashed at once"))
    assert found.rolls_back and found.restore_database
    assert found.reason == "crashed at once"


def test_steps_only_go_forward_and_belong_to_their_kind() -> None:
    j = journal(ReleaseKind.SITE, Step.MIGRATED)
    with pytest.raises(InstallError):
        j.done(Step.FROZEN)
    with pytest.raises(InstallError):
        journal(ReleaseKind.SITE, Step.PROBED)
    with pytest.raises(InstallError):
        journal(ReleaseKind.LICENSE, Step.PLANNED)
    assert progress(j.done(Step.DRAINED)) == (len(SITE_STEPS), len(SITE_STEPS))


def test_a_journal_survives_its_file_form() -> None:
    j = journal(ReleaseKind.SITE, Step.SNAPSHOT).rolling_back("why")
    assert Journal.from_dict(j.to_dict()) == j
    with pytest.raises(InstallError):
        Journal.from_dict({"install_id": "x"})


@given(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(0, 10**10))
def test_the_estimate_grows_with_stored_data(db: int, more: int, package: int) -> None:
    small = estimate(ReleaseKind.SITE, db, package).seconds
    assert estimate(ReleaseKind.SITE, db + more, package).seconds >= small
    assert estimate(ReleaseKind.BASE, db + more, package).seconds <= small + 0.1


def test_a_new_major_version_asks_for_its_licence() -> None:
    assert needs_licence(parse_version("1.4"), parse_version("2.0"))
    assert not needs_licence(parse_version("1.4"), parse_version("1.5"))
    assert needs_licence(None, parse_version("1.0"))


def test_a_release_rolled_back_last_time_is_not_retried() -> None:
    history = [
        HistoryEntry("1", "site 1.1", Outcome.ROLLED_BACK, "unhealthy", "t1"),
        HistoryEntry("2", "site 1.2", Outcome.ROLLED_BACK, "unhealthy", "t2"),
        HistoryEntry("3", "site 1.2", Outcome.INSTALLED, "installed", "t3"),
    ]
    assert rolled_back(history) == {"site 1.1"}


def test_a_site_estimate_runs_until_the_probation_is_over() -> None:
    """What the command and the page say is how long the install takes: the minute the new
    version is watched is part of it (BASTION_INSTALL_PROBATION_SECONDS)."""
    site = estimate(ReleaseKind.SITE, 10_000_000, 2_000_000, probation_seconds=60)
    assert site.watched_seconds == 60 and site.seconds > 60 + site.paused_seconds
    assert site.paused_seconds == round(pause_seconds(10_000_000), 1) < 1
    assert "then 60 s watching the new version" in site.breakdown
    assert f"changes are paused for about {site.paused_seconds:g} s" in site.breakdown
    base = estimate(ReleaseKind.BASE, 10_000_000, 2_000_000, probation_seconds=60)
    assert base.watched_seconds == 0 and base.paused_seconds == 0
    both = Estimate(0.0, 10_000_000, 0) + base + site
    assert both.seconds == round(base.seconds + site.seconds, 1)
    assert both.package_bytes == 4_000_000 and both.watched_seconds == 60


def test_the_pause_grows_with_the_database() -> None:
    assert pause_seconds(0) < 1 < pause_seconds(300_000_000)
