"""The supervisor on its own: it restarts a worker that dies, keeps one appliance per
data directory, and refuses a base release whose supervisor does not run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bastion.supervisor.client import SupervisorClient
from bastion.supervisor.journal import PlannedRelease
from bastion.supervisor.messages import Install
from bastion.supervisor.slots import Releases
from tests.support.appliance import start_appliance, test_environment
from tests.support.installs import request_install, store_release, wait_idle
from tests.support.releases import project_wheel

HOST = "127.0.0.96"
SERVE = (sys.executable, "-m", "bastion", "appliance", "serve")


def live_worker(data: Path) -> int:
    return int(SupervisorClient(data).status().workers["live"]["pid"])


def test_a_worker_that_dies_is_started_again(tmp_path: Path) -> None:
    with start_appliance(tmp_path, host=HOST) as appliance:
        first = live_worker(appliance.data_dir)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with appliance.client() as client:
                    if client.get("/check_health").status_code == 200:
                        break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("no worker served again")
        assert live_worker(appliance.data_dir) != first
        assert "restarting in" in appliance.log()


def test_a_second_appliance_on_the_same_data_directory_refuses_to_start(tmp_path: Path) -> None:
    with start_appliance(tmp_path, host=HOST) as appliance:
        second = subprocess.run(
            [*SERVE, "--data", str(appliance.data_dir), "--listen", f"{HOST}:1"],
            env=test_environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert "another appliance already runs on" in second.stdout + second.stderr
        with appliance.client() as client:
            assert client.get("/check_health").status_code == 200


def test_a_base_whose_supervisor_does_not_run_is_never_switched_to(tmp_path: Path) -> None:
    wheel = project_wheel("1.1.0", tmp_path / "wheels", broken_supervisor=True)
    with start_appliance(tmp_path, host=HOST) as appliance:
        data = appliance.data_dir
        request_install(data, store_release(data, "base", "1.1.0", wheel))
        status = wait_idle(data)
        last = status["history"][-1]
        assert last["outcome"] == "rolled back"
        assert "broken on purpose" in last["reason"]
        assert Releases(data).target("base") == "base-1.0.0"
        assert status["base_version"] == "1.0.0"
        with appliance.client() as client:
            assert client.get("/check_health").status_code == 200


def test_a_scheduled_install_waits_for_its_time(tmp_path: Path) -> None:
    wheel = project_wheel("1.1.0", tmp_path / "wheels")
    env = {"BASTION_INSTALL_PROBATION_SECONDS": "1"}
    with start_appliance(tmp_path, host=HOST, env=env) as appliance:
        data = appliance.data_dir
        supervisor = SupervisorClient(data)
        at = datetime.now(UTC) + timedelta(seconds=4)
        release = store_release(data, "site", "1.1.0", wheel)
        planned = (PlannedRelease.from_dict(release),)
        supervisor.install(Install(planned, not_before=at.isoformat()))
        time.sleep(2)
        assert supervisor.status().state == "scheduled"
        status = wait_idle(data)
        last = status["history"][-1]
        assert last["outcome"] == "installed"
        assert datetime.fromisoformat(last["at"]) >= at.replace(microsecond=0)
        with appliance.client() as client:
            assert client.get("/check_health").json()["version"] == "1.1.0"
