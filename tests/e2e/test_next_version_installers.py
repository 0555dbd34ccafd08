"""Installers for the next site version, deployed before the site install (R11), all real
processes: a vendor's update service over TLS, an appliance on 1.0.0 that checks for and
downloads site 1.1.0, and Jump Clients.

The administrator makes 1.1.0 installers and takes the 1.1.0 build from the appliance.
On one endpoint a new client is installed from them (with the 1.1.0 build); on another,
a 1.0.0 client is running and the 1.1.0 installer is run over it. Both wait, offline,
and the site registers nothing. Once the site runs 1.1.0, both come online on 1.1.0 by
themselves: the new one registered, the other replaced in place (the same record, the
new installer's Jump Group), with no fleet upgrade needed. The page offers the same: the
version to choose, and the build to download.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.releases.wheels import install_wheel
from tests.integration._update_env import Vendor, service
from tests.integration.test_api import bearer, create_client, get_token
from tests.support import web
from tests.support.appliance import RunningAppliance, free_port, start_appliance
from tests.support.endpoints import Client, eventually, install_and_run
from tests.support.installs import wait_installed
from tests.support.releases import project_wheel

SERVICE_HOST, HOST = "127.0.0.210", "127.0.0.211"
SITE = "ahead.example.test"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    root = tmp_path_factory.mktemp("next-installers")
    vendor = Vendor.for_site(root / "vendor", SITE)
    vendor.publish_wheel("site", "1.1.0", project_wheel("1.1.0", root / "wheels"), "--site", SITE)
    root_file = root / "root.json"
    root_file.write_bytes(vendor.trusted_root())
    web, gateway = free_port(HOST), free_port(HOST)
    with service(vendor, SERVICE_HOST) as running:
        env = {
            **running.env(),
            "BASTION_UPDATE_SITE": SITE,
            "BASTION_UPDATE_TRUSTED_ROOT": str(root_file),
            "BASTION_INSTALL_PROBATION_SECONDS": "1",
            "BASTION_GATEWAY_LISTEN": f"{HOST}:{gateway}",
            "BASTION_GATEWAY_ADDRESS": f"{HOST}:{gateway}",
            "BASTION_PUBLIC_URL": f"https://{HOST}:{web}",
        }
        args = ["--hostname", SITE]
        with start_appliance(root, host=HOST, port=web, env=env, extra_args=args) as appliance:
            vendor.enrol(SITE, appliance.data_dir)
            yield appliance


def run(command: list[str], state: Path, log: Path, lib: Path) -> Client:
    """`bastion jump-client …` from the build in `lib`, as an endpoint that installed it."""
    env = {**os.environ, "PYTHONPATH": str(lib), "PYTHONUNBUFFERED": "1"}
    env["BASTION_JUMP_CLIENT_WAIT_SECONDS"] = "1"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bastion", "jump-client", *command, "--dir", str(state)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return Client(state, process, log)


def installed(state: Path, log: Path, lib: Path, installer: Path) -> str:
    done = run(["install", str(installer)], state, log, lib)
    assert done.process.wait(timeout=120) == 0, done.output()
    return done.output()


def clients(api: httpx.Client) -> list[dict[str, Any]]:
    return list(api.get("/api/v1/jump-clients").json()["clients"])


def test_clients_installed_ahead_wait_offline_then_connect_on_the_new_version(
    appliance: RunningAppliance, tmp_path: Path
) -> None:
    token = get_token(appliance, create_client(appliance, "ahead")).json()["access_token"]
    with appliance.client(headers=bearer(token), timeout=120) as api:
        early = api.post("/api/v1/jump-clients/installers", json={"site_version": "1.1.0"})
        assert early.status_code == 409, early.text
        assert "Download the site release on the Updates page" in early.json()["error"]["message"]

        api.post("/api/v1/updates/check").raise_for_status()
        downloaded = api.post("/api/v1/updates/downloads", json={"release": "site 1.1.0"})
        assert downloaded.status_code == 200, downloaded.text

        body = {"site_version": "1.1.0", "jump_group": "Ahead", "tag": "r11"}
        made = api.post("/api/v1/jump-clients/installers", json=body)
        assert made.status_code == 201, made.text
        assert (made.json()["usable"], made.json()["waiting"]) == (False, True)
        installer = tmp_path / "installer-1.1.0.json"
        installer.write_text(made.json()["installer"])
        assert json.loads(installer.read_text())["site_version"] == "1.1.0"

        build = api.get("/api/v1/jump-clients/installers/builds/1.1.0")
        assert build.status_code == 200, build.text
        assert build.headers["x-content-sha256"] == hashlib.sha256(build.content).hexdigest()
        wheel = tmp_path / "bastion-1.1.0-py3-none-any.whl"
        wheel.write_bytes(build.content)
        new_lib = tmp_path / "lib-1.1.0"
        install_wheel(wheel, new_lib)

        with appliance.client(timeout=60) as browser:  # the same, on the page
            web.sign_in(browser, "admin", "password")
            web.change_password(browser, "password", "a long pass phrase ahead")
            page = browser.get("/login/jump/installer")
            assert '<option value="1.1.0"' in page.text
            assert page.text.count('href="/login/jump/installer/builds/') == 2
            assert "usable once the site runs 1.1.0" in page.text
            assert browser.get("/login/jump/installer/builds/1.1.0").content == build.content
            fields = {**body, "kind": "jump_client", "mode": "active", "valid_minutes": "60"}
            answer = web.submit(browser, "/login/jump/installer", "/login/jump/installer", **fields)
            assert answer.status_code == 200, answer.text
            on_page = tmp_path / "installer-page.json"
            on_page.write_bytes(answer.content)
            assert json.loads(answer.content)["site_version"] == "1.1.0"

        # an endpoint where a 1.0.0 client runs, and one with nothing installed yet
        current = tmp_path / "installer-1.0.0.json"
        current.write_text(
            api.post("/api/v1/jump-clients/installers", json={"jump_group": "Old"}).json()[
                "installer"
            ]
        )
        old = install_and_run(current, tmp_path / "old", tmp_path / "old.log")
        eventually(lambda: [c["status"] for c in clients(api)] == ["online"], what="1.0.0 online")
        before = clients(api)[0]

        said = installed(tmp_path / "new", tmp_path / "new.log", new_lib, installer)
        assert "waiting for the site to run version 1.1.0" in said, said
        assert not (tmp_path / "new" / "installation.json").exists()
        assert (tmp_path / "new" / "pending.json").stat().st_mode & 0o777 == 0o600
        new = run(["run"], tmp_path / "new", tmp_path / "new.log", new_lib)

        said = installed(tmp_path / "old", tmp_path / "old-install.log", new_lib, on_page)
        assert "The running Jump Client was stopped" in said, said
        assert old.process.wait(timeout=30) == 0, old.output()
        replaced = run(["run"], tmp_path / "old", tmp_path / "old.log", new_lib)
        try:
            time.sleep(4)  # several attempts at 1 s: each is told to wait
            assert new.process.poll() is None and replaced.process.poll() is None
            assert "waiting: This installer is for site version 1.1.0" in new.output()
            shown = clients(api)
            assert len(shown) == 1 and shown[0]["status"] == "offline", shown
            status = run(["status"], tmp_path / "new", tmp_path / "status.log", new_lib)
            assert status.process.wait(timeout=60) == 0
            assert "waits for its site" in status.output()

            started = api.post("/api/v1/updates/install", json={"releases": ["site 1.1.0"]})
            assert started.status_code == 202, started.text
            assert wait_installed(api)["history"][-1]["outcome"] == "installed"
            assert api.get("/check_health").json()["version"] == "1.1.0"

            eventually(
                lambda: (
                    len(shown := clients(api)) == 2
                    and all(c["status"] == "online" and c["version"] == "1.1.0" for c in shown)
                ),
                timeout=120,
                what="both clients online on 1.1.0",
            )
            after = {c["client_id"]: c for c in clients(api)}
            again = after[before["client_id"]]
            assert again["id"] == before["id"] and again["jump_group"] == "Ahead"
            assert {c["jump_group"] for c in after.values()} == {"Ahead"}
            assert api.get("/api/v1/jump-clients/fleet").json()["upgrading"] == 0
            listed = api.get("/api/v1/jump-clients/installers").json()
            shown = {(i["site_version"], i["usable"], i["installed"]) for i in listed}
            assert shown == {("1.1.0", True, 1), ("1.0.0", False, 1)}, listed
        finally:
            for client in (new, replaced, old):
                client.stop()
