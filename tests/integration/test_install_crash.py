"""Crash safety (R7): kill -9 the supervisor after each recorded install step, start again.

The appliance must come back serving the old or the new version, never a mix:
the slot links, the schema (the test release adds a table) and the served
version agree, and what was stored before the install is still there.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from bastion.platform.db.engine import current_head
from bastion.supervisor.journal import BASE_STEPS, SITE_STEPS, Step
from bastion.supervisor.slots import Releases
from tests.support import appliance as support
from tests.support.appliance import free_port, start_appliance
from tests.support.installs import request_install, store_release, wait_idle, wait_step
from tests.support.releases import project_wheel

HOST = "127.0.0.91"
CONSOLE = (sys.executable, "-m", "bastion", "appliance", "api-client")
FAST = {"BASTION_INSTALL_PROBATION_SECONDS": "1", "BASTION_INSTALL_HEALTH_DEADLINE_SECONDS": "30"}

HEAD = current_head()
"""The schema revision this build migrates to."""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    return {
        "site": project_wheel("1.1.0", out, new_table="install_probe"),
        "base": project_wheel("1.1.0", out),
    }


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("broken")
    return project_wheel("1.1.0", out, broken_health=True, new_table="install_probe")


def api_client(data_dir: Path) -> str:
    """Something stored before the install: an API client made from the console."""
    result = subprocess.run(
        [*CONSOLE, "create", "keeper", "--data", str(data_dir)],
        env=support.test_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def schema(data_dir: Path) -> tuple[str, bool]:
    with closing(sqlite3.connect(data_dir / "db" / "bastion.sqlite")) as db:
        revision = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    return revision, "install_probe" in tables


def changes_are_paused_for_a_moment(appliance: support.RunningAppliance) -> None:
    """While paused, a change is refused with a Retry-After that matches a pause of about a
    second (an empty database), and reads go on."""
    with appliance.client() as client:
        for path in ("/api/v1/oauth/token", "/login"):
            refused = client.post(path, data={"username": "admin", "password": "x"})
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert "try again in a moment" in refused.text
        assert client.get("/check_health").status_code == 200


@pytest.mark.parametrize("step", [s.value for s in SITE_STEPS])
def test_a_site_install_killed_after_each_step(
    step: str, tmp_path: Path, wheels: dict[str, Path]
) -> None:
    data, port = tmp_path / "data", free_port(HOST)
    paused = {**FAST, "BASTION_INSTALL_PAUSE_AFTER": step}
    with start_appliance(tmp_path, host=HOST, data_dir=data, port=port, env=paused) as first:
        api_client(data)
        request_install(data, store_release(data, "site", "1.1.0", wheels["site"]))
        wait_step(data, step)
        if step == Step.FROZEN.value:
            changes_are_paused_for_a_moment(first)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
    forward = SITE_STEPS.index(Step(step)) >= SITE_STEPS.index(Step.SWITCHED)
    with start_appliance(tmp_path, host=HOST, data_dir=data, port=port, env=FAST) as again:
        status = wait_idle(data)
        with again.client() as client:
            assert client.get("/check_health").json()["version"] == (
                "1.1.0" if forward else "1.0.0"
            )
        releases = Releases(data)
        assert releases.target("current") == ("site-1.1.0" if forward else "site-1.0.0")
        assert schema(data) == (("9001", True) if forward else (HEAD, False))
        assert status["history"][-1]["outcome"] == ("installed" if forward else "rolled back")
        assert not (data / "state" / "install" / "journal.json").exists()
        listed = subprocess.run(
            [*CONSOLE, "revoke", "keeper", "--data", str(data)],
            env=support.test_environment(),
            capture_output=True,
            text=True,
        )
        assert listed.returncode == 0, listed.stdout + listed.stderr


def test_a_rollback_killed_half_way_is_finished_by_the_next_start(
    tmp_path: Path, wheels: dict[str, Path], broken: Path
) -> None:
    data, port = tmp_path / "data", free_port(HOST)
    paused = {**FAST, "BASTION_INSTALL_PAUSE_AFTER": "rolling-back"}
    paused["BASTION_INSTALL_HEALTH_DEADLINE_SECONDS"] = "30"  # a 500 rolls back at once
    with start_appliance(tmp_path, host=HOST, data_dir=data, port=port, env=paused) as first:
        request_install(data, store_release(data, "site", "1.1.0", broken))
        journal = data / "state" / "install" / "journal.json"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if journal.exists() and '"rollback": "' in journal.read_text():
                break
            time.sleep(0.05)
        assert schema(data) == ("9001", True)  # migrated, not yet put back
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
    with start_appliance(tmp_path, host=HOST, data_dir=data, port=port, env=FAST) as again:
        status = wait_idle(data)
        with again.client() as client:
            assert client.get("/check_health").json()["version"] == "1.0.0"
        assert schema(data) == (HEAD, False)
        last = status["history"][-1]
        assert last["outcome"] == "rolled back" and "answered HTTP 500" in last["reason"]


@pytest.mark.parametrize("step", [s.value for s in BASE_STEPS])
def test_a_base_install_killed_after_each_step(
    step: str, tmp_path: Path, wheels: dict[str, Path]
) -> None:
    data, port = tmp_path / "data", free_port(HOST)
    paused = {**FAST, "BASTION_INSTALL_PAUSE_AFTER": step}
    with start_appliance(tmp_path, host=HOST, data_dir=data, port=port, env=paused) as first:
        request_install(data, store_release(data, "base", "1.1.0", wheels["base"]))
        wait_step(data, step)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
    forward = step == Step.CONFIRMED.value
    with start_appliance(tmp_path, host=HOST, data_dir=data, port=port, env=FAST) as again:
        status = wait_idle(data)
        assert status["base_version"] == ("1.1.0" if forward else "1.0.0")
        assert Releases(data).target("base") == ("base-1.1.0" if forward else "base-1.0.0")
        assert status["history"][-1]["outcome"] == ("installed" if forward else "rolled back")
        with again.client() as client:
            assert client.get("/check_health").status_code == 200
