"""A fleet upgrades itself after a site install (R12-R14, R18, R20), all real processes.

Three Jump Clients (two active, one passive) and a Jumpoint run on site version 1.0.0. A
site release 1.1.0, built from this project's own wheel, is installed; each client
queues for its upgrade when it next comes in, and with a cap of one they upgrade one at a
time: each fetches the build, checks it, installs it beside the running one, restarts
into it and comes back on 1.1.0 (the Jumpoint as a Jumpoint: R15). An installer made
before the install is refused after it.

A release whose Jump Client cannot reach the site is undone by each client itself and
shown as failed, and with a failure threshold the rollout halts until resumed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_jump_clients_fleet import (
    Client,
    Site,
    bastion,
    client_id,
    eventually,
    installer,
    record,
)
from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import free_port, start_appliance
from tests.support.installs import request_install, store_release, wait_idle
from tests.support.releases import project_wheel

SITE = "upgrades.example.test"
KINDS = {"jumpoint": {"mode": "active", "kind": "jumpoint"}}
"""The installers of the agents that are not a Jump Client of a mode."""


@contextmanager
def a_site(tmp: Path, host: str) -> Iterator[Site]:
    web, gateway = free_port(host), free_port(host)
    env = {
        "BASTION_GATEWAY_LISTEN": f"{host}:{gateway}",
        "BASTION_GATEWAY_ADDRESS": f"{host}:{gateway}",
        "BASTION_PUBLIC_URL": f"https://{host}:{web}",
        "BASTION_INSTALL_PROBATION_SECONDS": "1",
    }
    with start_appliance(tmp, host=host, port=web, env=env, extra_args=["--hostname", SITE]) as a:
        token = get_token(a, create_client(a, "upgrades")).json()["access_token"]
        with a.client(headers=bearer(token), timeout=120) as api:
            yield Site(a, api)


def settings(site: Site, **changed: int) -> None:
    current = site.api.get("/api/v1/jump-clients/settings").json()
    saved = site.api.put("/api/v1/jump-clients/settings", json={**current, **changed})
    assert saved.status_code == 200, saved.text


def start_clients(
    site: Site, tmp: Path, modes: list[str], deadline: float = 120.0
) -> dict[str, Client]:
    import os
    import subprocess
    import sys

    files = {mode: installer(site, tmp, **KINDS.get(mode, {"mode": mode})) for mode in set(modes)}
    clients: dict[str, Client] = {}
    for index, mode in enumerate(modes):
        state = tmp / f"{mode}-{index}"
        command = "jumpoint" if mode == "jumpoint" else "jump-client"
        done = bastion(command, "install", str(files[mode]), "--dir", str(state))
        assert done.returncode == 0, done.stdout + done.stderr
        log = tmp / f"{mode}-{index}.log"
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "BASTION_JUMP_CLIENT_UPGRADE_DEADLINE": str(deadline),
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "bastion", command, "run", "--dir", str(state)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        clients[f"{mode}-{index}"] = Client(state, process, log)
    return clients


def stop(clients: dict[str, Client]) -> None:
    for client in clients.values():
        if client.process.poll() is None:
            client.process.terminate()
            client.process.wait(timeout=30)


def install_site(site: Site, wheel: Path) -> None:
    data = site.appliance.data_dir
    request_install(data, store_release(data, "site", "1.1.0", wheel, site=SITE))
    last = wait_idle(data, timeout=240)["history"][-1]
    assert last["outcome"] == "installed", last


def fleet(site: Site) -> dict[str, Any]:
    return dict(site.api.get("/api/v1/jump-clients/fleet").json())


def versions(site: Site, clients: dict[str, Client]) -> dict[str, str]:
    return {name: record(site, c)["version"] for name, c in clients.items()}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheels")


def test_the_fleet_upgrades_itself_one_at_a_time(
    wheels: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("upgrade")
    with a_site(tmp, "127.0.0.42") as site:
        settings(site, max_concurrent_upgrades=1, canary_percent=0)
        clients = start_clients(site, tmp, ["active", "active", "passive", "jumpoint"])
        try:
            active = [c for n, c in clients.items() if not n.startswith("passive")]
            eventually(lambda: all(record(site, c)["online"] for c in active), what="online")
            old_installer = json.loads(installer(site, tmp, mode="active").read_text())
            install_site(site, project_wheel("1.1.0", wheels))
            # the replaced worker may still answer on a kept-alive connection for an instant
            eventually(
                lambda: site.api.get("/api/v1/status").json()["product_version"] == "1.1.0",
                timeout=10,
                what="the new version serving",
            )
            peak, deadline = 0, time.monotonic() + 240
            passive = clients["passive-2"]
            while time.monotonic() < deadline:
                progress = fleet(site)
                peak = max(peak, progress["upgrading"])
                if progress["upgraded"] == len(clients):
                    break
                if record(site, passive)["version"] != "1.1.0":
                    site.api.post(f"/api/v1/jump-clients/{record(site, passive)['id']}/wake")
                time.sleep(0.5)
            assert versions(site, clients) == dict.fromkeys(clients, "1.1.0"), fleet(site)
            assert peak <= 1, "the cap of one concurrent upgrade was passed"
            assert fleet(site)["failed"] == 0
            jumpoint = clients["jumpoint-3"]
            assert record(site, jumpoint)["kind"] == "jumpoint"
            restarted = Path(f"/proc/{jumpoint.process.pid}/cmdline").read_bytes().split(b"\0")
            assert restarted[-5:-1] == [b"jumpoint", b"run", b"--dir", str(jumpoint.state).encode()]
            for client in clients.values():  # each took its build over its own connection
                assert f"to Jump Client {client_id(client)}" in site.appliance.log()
                assert (client.state / "builds" / "1.1.0" / "lib").is_dir()
                assert client.process.poll() is None  # the same process, re-executed
            refused = bastion(
                "jump-client", "install", str(_file(tmp, old_installer)), "--dir", str(tmp / "late")
            )
            assert refused.returncode == 2
            assert "made for site version 1.0.0" in refused.stdout
            assert "Make a new installer" in refused.stdout
        finally:
            stop(clients)


def _file(tmp: Path, body: dict[str, Any]) -> Path:
    path = tmp / "old-installer.json"
    path.write_text(json.dumps(body))
    return path


def test_a_build_that_cannot_reach_the_site_is_undone_and_the_rollout_halts(
    wheels: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("broken")
    with a_site(tmp, "127.0.0.43") as site:
        settings(site, max_concurrent_upgrades=1, canary_percent=0, halt_failure_percent=50)
        clients = start_clients(site, tmp, ["active", "active"], deadline=8.0)
        try:
            eventually(
                lambda: all(record(site, c)["online"] for c in clients.values()), what="online"
            )
            install_site(site, project_wheel("1.1.0", wheels, broken_agent=True))
            eventually(lambda: fleet(site)["halted"] is not None, timeout=180, what="halted")
            progress = fleet(site)
            assert progress["failed"] == 2 and progress["upgraded"] == 0
            assert "failed" in progress["halted"]
            for client in clients.values():
                shown = record(site, client)
                assert shown["version"] == "1.0.0" and shown["status"] == "failed"
                assert not (client.state / "builds" / "1.1.0").exists()
            eventually(
                lambda: all(record(site, c)["online"] for c in clients.values()),
                what="back online on the old build",
            )
            resumed = site.api.post(
                "/api/v1/jump-clients/fleet/resume", json={"retry_failed": False}
            )
            assert resumed.json()["halted"] is None
            assert client_id(clients["active-0"])
        finally:
            stop(clients)
