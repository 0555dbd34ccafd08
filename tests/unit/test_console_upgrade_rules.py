"""The console's self-upgrade rules: when it upgrades, when it refuses, which build it runs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.access_console.rules import (
    CurrentBuild,
    Step,
    build_to_run,
    is_older,
    next_step,
    same_version,
)

BUILD = CurrentBuild(version="1.1.0", lib="/data/console/builds/1.1.0/lib")


@pytest.mark.parametrize(
    ("console", "site", "upgraded_from", "step"),
    [
        ("1.0.0", "1.0.0", "", Step.RUN),
        ("1.1", "1.1.0", "", Step.RUN),
        ("1.0.0", "1.1.0", "", Step.UPGRADE),
        ("1.0.0", "2.0", "", Step.UPGRADE),
        ("1.1.0", "1.0.0", "", Step.SITE_OLDER),
        ("0+unknown", "1.1.0", "", Step.UPGRADE),
        ("1.0.0", "1.1.0+local", "", Step.UPGRADE),
        ("1.1.0", "1.1.0", "1.0.0", Step.RUN),
        ("1.1.0", "1.2.0", "1.0.0", Step.STILL_DIFFERENT),
        ("1.1.0", "1.0.0", "1.0.0", Step.STILL_DIFFERENT),
    ],
)
def test_the_next_step_follows_the_site_and_never_loops(
    console: str, site: str, upgraded_from: str, step: Step
) -> None:
    assert next_step(console, site, upgraded_from) is step


def test_versions_compare_as_versions_and_otherwise_as_text() -> None:
    assert same_version("1.1", "1.1.0.0") and not same_version("1.1", "1.10")
    assert same_version("0+unknown", " 0+unknown ") and not same_version("0+unknown", "1.0")
    assert is_older("1.9.9", "1.10") and not is_older("1.10", "1.9.9")
    assert not is_older("0+unknown", "1.0") and not is_older("1.0", "0+unknown")


@pytest.mark.parametrize(
    ("current", "running", "in_build", "lib"),
    [
        (None, "1.0.0", False, None),
        (BUILD, "1.0.0", False, BUILD.lib),
        (BUILD, "0+unknown", False, BUILD.lib),
        (BUILD, "1.1.0", False, None),
        (BUILD, "1.2.0", False, None),
        (BUILD, "1.0.0", True, None),
        (CurrentBuild(version="odd", lib="/x"), "1.0.0", False, None),
    ],
)
def test_the_installed_code_runs_a_newer_build_and_a_build_runs_no_other(
    current: CurrentBuild | None, running: str, in_build: bool, lib: str | None
) -> None:
    assert build_to_run(current, running, in_build) == lib


versions = st.lists(st.integers(0, 30), min_size=1, max_size=4).map(
    lambda parts: ".".join(map(str, parts))
)


@given(versions, versions)
def test_a_console_upgrades_only_to_a_newer_site_and_only_once(console: str, site: str) -> None:
    step = next_step(console, site)
    if same_version(console, site):
        assert step is Step.RUN
    else:
        assert step is (Step.UPGRADE if is_older(console, site) else Step.SITE_OLDER)
    assert next_step(site, site, upgraded_from=console) is Step.RUN
    assert next_step(console, site, upgraded_from="0.1") in (Step.RUN, Step.STILL_DIFFERENT)
