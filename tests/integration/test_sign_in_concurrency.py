"""Sign-in under concurrency, against a real appliance process over TLS: bursts of wrong
passwords count each attempt once and lock at the limit, the lock holds for the right
password too, nothing answers 500, and a flood of sign-ins leaves health, pages and the
API answering."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.flood import Tally, Timings, burst, poll, sign_in_clients
from tests.support.web import change_password, sign_in

PASSWORD = "a much better secret"
LOCK_AFTER = 10
# No delay between failures: every attempt up to the lock is checked, so a burst shows
# exactly how many the lockout lets through.
LOCKOUT = {
    "BASTION_LOCKOUT_FREE_ATTEMPTS": "3",
    "BASTION_LOCKOUT_BASE_DELAY_SECONDS": "0",
    "BASTION_LOCKOUT_LOCK_AFTER": str(LOCK_AFTER),
    "BASTION_LOCKOUT_LOCK_SECONDS": "600",
    "BASTION_PASSWORD_CHECKS_WAITING": "100",
}


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    folder = tmp_path_factory.mktemp("sign-in-burst")
    with start_appliance(folder, host="127.0.0.61", env=LOCKOUT) as running:
        yield running


@pytest.fixture(scope="module")
def api(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    token = get_token(appliance, create_client(appliance, "burst-watch")).json()["access_token"]
    with appliance.client(headers=bearer(token)) as client:
        yield client


def create_account(appliance: RunningAppliance, api: httpx.Client, username: str) -> None:
    """An account whose owner has chosen their own password already."""
    first = "a first pass phrase"
    body = {"username": username, "password": first, "role": "representative"}
    assert api.post("/api/v1/accounts", json=body).status_code == 201
    with appliance.client() as browser:
        sign_in(browser, username, first)
        assert change_password(browser, first, PASSWORD).status_code == 303


def failures_in_audit(api: httpx.Client, username: str) -> int:
    entries = api.get("/api/v1/audit", params={"action": "sign_in.failure", "limit": 500})
    return sum(1 for e in entries.json()["entries"] if e["target"] == username)


def run_burst(appliance: RunningAppliance, attempts: list[tuple[str, str]]) -> Counter[int]:
    answers = asyncio.run(burst(appliance.url, appliance.tls(), attempts))
    return Counter(a.status_code for a in answers)


def test_a_burst_of_wrong_passwords_is_counted_once_each_and_locks_at_the_limit(
    appliance: RunningAppliance, api: httpx.Client
) -> None:
    create_account(appliance, api, "burst.one")
    statuses = run_burst(appliance, [("burst.one", f"wrong {n}") for n in range(40)])
    assert statuses == {401: LOCK_AFTER, 429: 40 - LOCK_AFTER}, statuses
    assert failures_in_audit(api, "burst.one") == LOCK_AFTER
    locked = run_burst(appliance, [("burst.one", PASSWORD)] * 5)
    assert locked == {429: 5}, "the lock must hold for the right password too"


def test_the_right_password_in_a_burst_of_wrong_ones_never_passes_the_limit(
    appliance: RunningAppliance, api: httpx.Client
) -> None:
    create_account(appliance, api, "burst.two")
    attempts = [("burst.two", f"wrong {n}") for n in range(11)] + [("burst.two", PASSWORD)]
    statuses = run_burst(appliance, attempts)
    assert set(statuses) <= {303, 401, 429}, statuses
    if statuses[303] == 0:  # the right one came after the lock: it must stay locked
        assert statuses[401] == LOCK_AFTER
        assert run_burst(appliance, [("burst.two", PASSWORD)]) == {429: 1}
    assert failures_in_audit(api, "burst.two") == statuses[401]


def test_unknown_usernames_are_throttled_the_same_way(
    appliance: RunningAppliance, api: httpx.Client
) -> None:
    statuses = run_burst(appliance, [("nobody.here", "guess")] * 15)
    assert statuses == {401: LOCK_AFTER, 429: 5}, statuses
    assert failures_in_audit(api, "nobody.here") == LOCK_AFTER


@pytest.fixture(scope="module")
def busy_appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    """Real Argon2 (as shipped), one check at a time and two waiting: easy to fill."""
    env = {
        "BASTION_PASSWORD_HASH_FAST": "0",
        "BASTION_PASSWORD_CHECKS_AT_ONCE": "1",
        "BASTION_PASSWORD_CHECKS_WAITING": "2",
    }
    folder = tmp_path_factory.mktemp("sign-in-flood")
    with start_appliance(folder, host="127.0.0.62", env=env) as running:
        yield running


def test_beyond_the_checks_at_once_sign_ins_get_429_and_count_nothing(
    busy_appliance: RunningAppliance,
) -> None:
    attempts = [(f"flood.{n}", "wrong") for n in range(12)]
    answers = asyncio.run(burst(busy_appliance.url, busy_appliance.tls(), attempts))
    busy = [a for a in answers if a.status_code == 429]
    assert {a.status_code for a in answers} == {401, 429}
    assert all("Nothing was counted" in a.text and int(a.headers["Retry-After"]) >= 1 for a in busy)
    token = get_token(busy_appliance, create_client(busy_appliance, "flood-watch"))
    with busy_appliance.client(headers=bearer(token.json()["access_token"])) as api:
        counted = api.get("/api/v1/audit", params={"action": "sign_in.failure"}).json()["total"]
    assert counted == len(answers) - len(busy)


async def flood_and_watch(
    appliance: RunningAppliance, api_token: str
) -> tuple[Tally, dict[str, Timings]]:
    """30 clients post wrong sign-ins for 8 s while health, a page and the API are polled."""
    seconds = 8.0

    def credentials(client: int, attempt: int) -> tuple[str, str]:
        return f"flood.{client}.{attempt}", "not the password"

    tls = appliance.tls()
    async with (
        httpx.AsyncClient(base_url=appliance.url, verify=tls) as watcher,
        httpx.AsyncClient(base_url=appliance.url, verify=tls, headers=bearer(api_token)) as api,
    ):
        flood, health, page, status = await asyncio.gather(
            sign_in_clients(appliance.url, tls, 30, seconds, credentials),
            poll(watcher, "/check_health", seconds, every=0.1, timeout=5),
            poll(watcher, "/login", seconds, every=0.5, timeout=5),
            poll(api, "/api/v1/status", seconds, every=0.5, timeout=5),
        )
    return flood, {"health": health, "sign-in page": page, "API status": status}


def test_a_sign_in_flood_leaves_health_pages_and_the_api_answering(
    busy_appliance: RunningAppliance,
) -> None:
    token = get_token(busy_appliance, create_client(busy_appliance, "watcher")).json()
    flood, watched = asyncio.run(flood_and_watch(busy_appliance, token["access_token"]))
    assert not flood.failures, flood.failures[:3]
    assert set(flood.statuses) <= {401, 429} and flood.statuses[401] > 0, flood.statuses
    for name, timings in watched.items():
        assert set(timings.statuses) == {200}, f"{name} under the flood: {timings.statuses}"
