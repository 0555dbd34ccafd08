"""Installs under traffic: the switch loses no request; a bad release is undone by itself."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest

from bastion.supervisor.slots import Releases
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.installs import request_install, store_release, wait_idle
from tests.support.releases import project_wheel

HOST = "127.0.0.92"


@contextmanager
def traffic(appliance: RunningAppliance) -> Iterator[dict[str, list[str]]]:
    """/check_health every 20 ms over new connections, until the block ends."""
    seen: dict[str, list[str]] = {"versions": [], "failures": []}
    done = threading.Event()

    def run() -> None:
        while not done.is_set():
            try:
                with appliance.client(timeout=5) as client:
                    answer = client.get("/check_health")
                if answer.status_code == 200:
                    seen["versions"].append(answer.json()["version"])
                else:
                    seen["failures"].append(f"{answer.status_code} {answer.text[:80]}")
            except httpx.HTTPError as error:
                seen["failures"].append(repr(error))
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join(10)


def tables(data: Path) -> set[str]:
    with closing(sqlite3.connect(data / "db" / "bastion.sqlite")) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master")}


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheels")


def test_a_site_install_switches_under_traffic_without_a_failed_request(
    tmp_path: Path, out: Path
) -> None:
    wheel = project_wheel("1.1.0", out, new_table="install_probe")
    env = {"BASTION_INSTALL_PROBATION_SECONDS": "1"}
    with start_appliance(tmp_path, host=HOST, env=env) as appliance:
        data = appliance.data_dir
        with traffic(appliance) as seen:
            request_install(data, store_release(data, "site", "1.1.0", wheel))
            status = wait_idle(data)
            time.sleep(0.3)
        assert status["history"][-1]["outcome"] == "installed"
        assert seen["failures"] == []
        assert seen["versions"][0] == "1.0.0" and seen["versions"][-1] == "1.1.0"
        assert Releases(data).target("previous") == "site-1.0.0"
        assert "install_probe" in tables(data)


def test_a_release_whose_health_check_answers_500_is_rolled_back_at_once(
    tmp_path: Path, out: Path
) -> None:
    """With the default 60 s health deadline: the first error answers end the wait, and the
    reason names them (a deadline that ran out would say "within 60 s")."""
    wheel = project_wheel("1.1.0", out, broken_health=True, new_table="install_probe")
    with start_appliance(tmp_path, host=HOST) as appliance:
        data = appliance.data_dir
        with traffic(appliance) as seen:
            request_install(data, store_release(data, "site", "1.1.0", wheel))
            status = wait_idle(data)
        assert seen["failures"] == []
        assert set(seen["versions"]) == {"1.0.0"}
        last = status["history"][-1]
        assert last["outcome"] == "rolled back"
        assert "health check answered HTTP 500 Internal Server Error" in last["reason"]
        assert "broken on purpose" in last["reason"] and "within 60 s" not in last["reason"]
        assert status["rolled_back"] == ["site 1.1.0"]
        assert "install_probe" not in tables(data)
        assert Releases(data).slots() == ["base-1.0.0", "site-1.0.0"]
        with appliance.client() as client:  # changes were paused; they go through again
            assert client.get("/check_health").json()["version"] == "1.0.0"


def test_a_release_that_exits_as_it_starts_is_rolled_back_at_once(
    tmp_path: Path, out: Path
) -> None:
    """With the default 60 s health deadline: the exit ends the wait."""
    wheel = project_wheel("1.1.0", out, exits_on_start=True, new_table="install_probe")
    with start_appliance(tmp_path, host=HOST) as appliance:
        data = appliance.data_dir
        request_install(data, store_release(data, "site", "1.1.0", wheel))
        status = wait_idle(data)
        last = status["history"][-1]
        assert last["outcome"] == "rolled back"
        assert "the new version exited (code 1) before it was healthy" in last["reason"]
        assert "install_probe" not in tables(data)
        with appliance.client() as client:
            assert client.get("/check_health").json()["version"] == "1.0.0"


def test_new_processes_not_ready_in_time_are_rolled_back_cleanly(tmp_path: Path, out: Path) -> None:
    """A deadline no Python process can meet: the rollback ends every process it started
    and the supervisor is idle again, not stuck rolling back."""
    wheel = project_wheel("1.1.0", out, new_table="install_probe")
    env = {"BASTION_INSTALL_HEALTH_DEADLINE_SECONDS": "0.1"}
    with start_appliance(tmp_path, host=HOST, env=env) as appliance:
        data = appliance.data_dir
        request_install(data, store_release(data, "site", "1.1.0", wheel))
        status = wait_idle(data)
        last = status["history"][-1]
        assert last["outcome"] == "rolled back"
        assert "was not ready within 0.1 s" in last["reason"]
        assert status["workers"].keys() == {"live"}
        assert "install_probe" not in tables(data)
        assert "Bad file descriptor" not in appliance.log()
        with appliance.client() as client:
            assert client.get("/check_health").json()["version"] == "1.0.0"


def test_a_new_version_that_dies_in_its_first_minute_is_rolled_back(
    tmp_path: Path, out: Path
) -> None:
    wheel = project_wheel("1.1.0", out, new_table="install_probe")
    env = {"BASTION_INSTALL_PROBATION_SECONDS": "60"}
    with start_appliance(tmp_path, host=HOST, env=env) as appliance:
        data = appliance.data_dir
        request_install(data, store_release(data, "site", "1.1.0", wheel))
        client = wait_for_probation(data)
        os.kill(client, signal.SIGKILL)
        status = wait_idle(data)
        last = status["history"][-1]
        assert last["outcome"] == "rolled back"
        assert "within its first 60 s" in last["reason"]
        assert Releases(data).target("current") == "site-1.0.0"
        assert "install_probe" not in tables(data)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with appliance.client() as http:
                    if http.get("/check_health").json().get("version") == "1.0.0":
                        break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("the old version did not come back")


def wait_for_probation(data: Path) -> int:
    """The new worker's pid once the install watches it through its first minute."""
    from bastion.supervisor.client import SupervisorClient

    supervisor = SupervisorClient(data)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = supervisor.status()
        live = status.workers.get("live", {})
        step = status.progress.journal.step.value if status.progress else None
        if step == "drained" and live.get("slot") == "site-1.1.0":
            return int(live["pid"])
        time.sleep(0.1)
    raise AssertionError("the install never reached its probation")
