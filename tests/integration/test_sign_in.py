"""Sign-in over real TLS against a real appliance process: first login, cookies, lockout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.web import change_password, csrf_of, sign_in, submit

NEW_PASSWORD = "a much better secret"
LOCKOUT = {
    "BASTION_LOCKOUT_FREE_ATTEMPTS": "2",
    "BASTION_LOCKOUT_BASE_DELAY_SECONDS": "1",
    "BASTION_LOCKOUT_MAX_DELAY_SECONDS": "2",
    "BASTION_LOCKOUT_LOCK_AFTER": "4",
    "BASTION_LOCKOUT_LOCK_SECONDS": "3",
}


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    with start_appliance(tmp_path_factory.mktemp("sign-in"), host="127.0.0.45", env=LOCKOUT) as app:
        yield app


def test_first_sign_in_must_set_a_new_password_before_any_page(appliance: RunningAppliance) -> None:
    with appliance.client() as browser:
        response = sign_in(browser, "admin", "password")
        assert response.status_code == 303
        assert response.headers["location"] == "/login/change-password"
        cookie = response.headers["set-cookie"].lower()
        assert all(flag in cookie for flag in ("secure", "httponly", "samesite=strict"))
        for page in ("/login/home", "/login/users", "/appliance/status/basics"):
            blocked = browser.get(page)
            assert blocked.status_code == 303, page
            assert blocked.headers["location"] == "/login/change-password"
        refused = change_password(browser, "password", "password")
        assert refused.status_code == 400 and "too common" in refused.text
        assert change_password(browser, "password", NEW_PASSWORD).status_code == 303
        assert browser.get("/appliance/status/basics").status_code == 200
    with appliance.client() as browser:
        assert sign_in(browser, "admin", "password").status_code == 401
        assert sign_in(browser, "admin", NEW_PASSWORD).headers["location"] == "/login/home"


def test_a_form_without_its_csrf_token_changes_nothing(appliance: RunningAppliance) -> None:
    with appliance.client() as browser:
        sign_in(browser, "admin", NEW_PASSWORD)
        users = browser.get("/login/users")
        fields = {"username": "mallory", "password": "a long pass phrase", "role": "administrator"}
        forged = browser.post("/login/users", data=fields)
        wrong = browser.post("/login/users", data={**fields, "csrf_token": "x" + csrf_of(users)})
        assert forged.status_code == 403 and "Nothing was changed" in forged.text
        assert wrong.status_code == 403
        assert "mallory" not in browser.get("/login/users").text


def test_repeated_failures_slow_down_then_lock_the_account(appliance: RunningAppliance) -> None:
    with appliance.client() as browser:
        for _ in range(2):
            assert sign_in(browser, "ops", "wrong").status_code == 401
        throttled = sign_in(browser, "ops", "wrong")  # after two failures: wait 1 s
        assert throttled.status_code == 429 and "Wait 1 second(s)" in throttled.text
        time.sleep(1.1)
        assert sign_in(browser, "ops", "wrong").status_code == 401  # then 2 s
        assert "Wait 2 second(s)" in sign_in(browser, "ops", "wrong").text
        time.sleep(2.1)
        assert sign_in(browser, "ops", "wrong").status_code == 401  # the fourth failure locks
        locked = sign_in(browser, "ops", "wrong")
        assert locked.status_code == 429 and "locked" in locked.text
        time.sleep(3.1)
        assert sign_in(browser, "ops", "wrong").status_code == 401


def test_a_throttled_account_refuses_even_the_right_password(appliance: RunningAppliance) -> None:
    with appliance.client() as browser:
        submit(browser, "/login", "/login", username="admin", password=NEW_PASSWORD)
        created = submit(
            browser,
            "/login/users",
            "/login/users",
            username="rep",
            display_name="Rep",
            role="representative",
            password="a long pass phrase",
        )
        assert created.status_code in (200, 303), created.text
    with appliance.client() as browser:
        for _ in range(3):
            sign_in(browser, "rep", "wrong")
        right = sign_in(browser, "rep", "a long pass phrase")
        assert right.status_code == 429


def test_an_appliance_restarted_on_the_same_data_keeps_its_accounts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with start_appliance(tmp_path, host="127.0.0.46", data_dir=data) as first, first.client() as b:
        sign_in(b, "admin", "password")
        change_password(b, "password", NEW_PASSWORD)
    with start_appliance(tmp_path, host="127.0.0.46", data_dir=data) as again, again.client() as b:
        assert sign_in(b, "admin", NEW_PASSWORD).headers["location"] == "/login/home"
        assert "First sign-in" not in again.log().split("Bastion appliance stopped.")[-1]
