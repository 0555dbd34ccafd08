"""Jump Clients' rules: installers, states, the upgrade queue and the halt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.jump_clients import rules
from bastion.jump_clients.rules import (
    ClientState,
    InstallerClaims,
    IssuedInstaller,
    JumpClientError,
    Status,
    Waiting,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CLAIMS = InstallerClaims("site.example", "1.0.0", "active", "Servers", "web")
ISSUED = IssuedInstaller(CLAIMS, NOW + timedelta(hours=1), revoked=False)


def refusal(issued: IssuedInstaller | None = ISSUED, **changed: str) -> str | None:
    claims = InstallerClaims(**{**CLAIMS.__dict__, **changed})
    return rules.installer_refusal(issued, claims, "site.example", "1.0.0", NOW)


def test_a_good_installer_is_accepted() -> None:
    assert refusal() is None


@pytest.mark.parametrize(
    ("issued", "changed", "says"),
    [
        (ISSUED, {"site": "other.example"}, "made for the site 'other.example'"),
        (None, {}, "never made this installer"),
        (IssuedInstaller(CLAIMS, ISSUED.expires_at, revoked=True), {}, "revoked"),
        (ISSUED, {"tag": "db"}, "altered"),
        (IssuedInstaller(CLAIMS, NOW, revoked=False), {}, "expired"),
    ],
)
def test_each_refusal_has_its_own_message(
    issued: IssuedInstaller | None, changed: dict[str, str], says: str
) -> None:
    found = refusal(issued, **changed)
    assert found is not None and says in found


def test_an_installer_for_an_older_site_version_asks_for_a_new_one() -> None:
    old = InstallerClaims("site.example", "0.9.0", "active", "Servers", "web")
    issued = IssuedInstaller(old, NOW + timedelta(hours=1), revoked=False)
    found = rules.installer_refusal(issued, old, "site.example", "1.0.0", NOW)
    assert found is not None and "Make a new installer" in found


@pytest.mark.parametrize("minutes", [9, 525_601, -1, 0])
def test_validity_is_ten_minutes_to_a_year(minutes: int) -> None:
    with pytest.raises(JumpClientError, match="10 to 525,600"):
        rules.check_validity(minutes)


def test_labels_are_bounded_and_printable() -> None:
    assert rules.clean_label("tag", "  Web   servers ") == "Web servers"
    with pytest.raises(JumpClientError, match="at most 100"):
        rules.clean_label("tag", "x" * 101)
    with pytest.raises(JumpClientError, match="control character"):
        rules.clean_label("tag", "a\x07b")


def state(**changed: object) -> ClientState:
    base = {
        "online": False,
        "last_seen_at": NOW - timedelta(hours=1),
        "installed_at": NOW - timedelta(days=2),
        "revoked": False,
        "uninstall_requested": False,
        "version": "1.0.0",
        "upgrade_state": "",
    }
    return ClientState(**{**base, **changed})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ({"online": True}, Status.ONLINE),
        ({}, Status.OFFLINE),
        ({"last_seen_at": NOW - timedelta(days=31)}, Status.LOST),
        ({"version": "0.9.0"}, Status.UPGRADE_PENDING),
        ({"version": "0.9.0", "upgrade_state": "upgrading"}, Status.UPGRADING),
        ({"version": "0.9.0", "upgrade_state": "failed"}, Status.FAILED),
        ({"revoked": True, "online": True}, Status.REVOKED),
        ({"uninstall_requested": True}, Status.UNINSTALLING),
    ],
)
def test_a_clients_status(changed: dict[str, object], expected: Status) -> None:
    assert rules.status_of(state(**changed), "1.0.0", timedelta(days=30), NOW) is expected


def waiting(row_id: int, first: bool = False, canary: bool = False) -> Waiting:
    return Waiting(row_id, f"jc_{row_id}", first, canary)


def test_the_queue_takes_the_asked_for_first_then_canaries_under_the_cap() -> None:
    queue = [waiting(1), waiting(2, canary=True), waiting(3, first=True), waiting(4)]
    chosen = rules.next_upgrades(queue, upgrading=0, cap=2, canaries_waiting=1)
    assert [w.row_id for w in chosen] == [3, 2]
    assert rules.next_upgrades(queue, upgrading=2, cap=2, canaries_waiting=0) == []
    after = rules.next_upgrades(queue, upgrading=0, cap=10, canaries_waiting=0)
    assert [w.row_id for w in after] == [3, 2, 1, 4]


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 100), st.integers(0, 50))
def test_the_queue_never_passes_the_cap(flags: list[bool], cap: int, upgrading: int) -> None:
    queue = [waiting(i, canary=c) for i, c in enumerate(flags)]
    chosen = rules.next_upgrades(queue, upgrading, cap, canaries_waiting=0)
    assert len(chosen) + min(upgrading, cap) <= cap


def test_a_rollout_halts_on_the_recent_failure_rate() -> None:
    assert rules.halt_reason([True, False, True, True], 20, fleet=100) is None  # too few yet
    found = rules.halt_reason([True, False, False, True, True], 20, fleet=100)
    assert found is not None and "2 of the last 5" in found
    assert rules.halt_reason([True] * 19 + [False], 20, fleet=100) is None
    assert rules.halt_reason([False, False], 50, fleet=2) is not None  # a small fleet


@given(st.integers(0, 100))
def test_the_canary_share_is_stable_and_near_its_percent(percent: int) -> None:
    ids = [f"jc_{i:06d}" for i in range(2000)]
    share = sum(rules.is_canary(i, percent) for i in ids) / len(ids) * 100
    assert abs(share - percent) < 5
    assert [rules.is_canary(i, percent) for i in ids[:50]] == [
        rules.is_canary(i, percent) for i in ids[:50]
    ]


def test_settings_are_kept_within_their_limits() -> None:
    assert rules.check_settings(rules.FleetSettings()) == rules.FleetSettings()
    with pytest.raises(JumpClientError, match="Maximum Number of Concurrent"):
        rules.check_settings(rules.FleetSettings(max_concurrent_upgrades=501))
    with pytest.raises(JumpClientError, match="connection rate"):
        rules.check_settings(rules.FleetSettings(connection_rate=301))


def test_a_client_still_trusts_a_release_that_shares_one_of_its_anchors() -> None:
    old, new, other = "a" * 64, "b" * 64, "c" * 64
    assert rules.still_trusted([old, new], [new])
    assert rules.still_trusted([new], [other, new])
    assert not rules.still_trusted([old], [new, other])
    assert not rules.still_trusted([], [new])  # never reported: not counted on
