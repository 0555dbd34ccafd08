"""Before a site install, the Jump Clients that would go offline are counted (R19).

A real update service on 127.0.0.91 offers two site releases of this checkout: 1.1.0,
built with a CA the site's clients have never seen, and 1.2.0, built with that CA and
the appliance's own internal CA. A real appliance on 127.0.0.92 has two Jump Clients
installed by the `bastion jump-client install` command from its own installers (they
report the anchors their installer carried). Installing 1.1.0 is refused until the loss
is acknowledged, from the API and the console; 1.2.0 is planned without a word.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from bastion.entrypoints.cli import app as bastion_command
from tests.integration._update_env import UpdateService, Vendor, service
from tests.integration.test_api import bearer, create_client, get_token
from tests.integration.test_install_ui import audit_actions, download
from tests.support.appliance import RunningAppliance, free_port, start_appliance
from tests.support.releases import project_wheel

SERVICE_HOST, APPLIANCE_HOST = "127.0.0.91", "127.0.0.92"
S = "anchors.acme.example"
INSTALL = "/api/v1/updates/install"


@dataclass
class World:
    vendor: Vendor
    service: UpdateService
    wheels: Path
    root_file: Path

    def env(self) -> dict[str, str]:
        return {
            **self.service.env(),
            "BASTION_UPDATE_SITE": S,
            "BASTION_UPDATE_TRUSTED_ROOT": str(self.root_file),
        }


def a_ca(directory: Path, name: str) -> Path:
    """A self-signed CA certificate the site's clients have never seen."""
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "30",
            "-subj",
            f"/CN={name}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
    )
    return cert


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("preflight")
    vendor = Vendor.for_site(root / "vendor", S)
    new_ca = a_ca(root, "next-ca")
    wheel = project_wheel("1.1.0", root / "wheels")
    vendor.publish_wheel("site", "1.1.0", wheel, "--site", S, "--trust-anchors", str(new_ca))
    root_file = root / "root.json"
    root_file.write_bytes(vendor.trusted_root())
    with service(vendor, SERVICE_HOST) as running:
        yield World(vendor, running, root / "wheels", root_file)


@pytest.fixture(scope="module")
def appliance(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    tmp = tmp_path_factory.mktemp("appliance")
    web, gateway = free_port(APPLIANCE_HOST), free_port(APPLIANCE_HOST)
    env = {
        **world.env(),
        "BASTION_GATEWAY_LISTEN": f"{APPLIANCE_HOST}:{gateway}",
        "BASTION_GATEWAY_ADDRESS": f"{APPLIANCE_HOST}:{gateway}",
        "BASTION_PUBLIC_URL": f"https://{APPLIANCE_HOST}:{web}",
    }
    extra = ["--hostname", S]
    with start_appliance(tmp, host=APPLIANCE_HOST, port=web, env=env, extra_args=extra) as running:
        world.vendor.enrol(S, running.data_dir, world.env())
        yield running


@pytest.fixture(scope="module")
def api(
    appliance: RunningAppliance, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    token = get_token(appliance, create_client(appliance, "preflight")).json()["access_token"]
    with appliance.client(headers=bearer(token), timeout=60) as client:
        tmp = tmp_path_factory.mktemp("endpoints")
        for index in range(2):
            made = client.post("/api/v1/jump-clients/installers", json={"mode": "passive"})
            assert made.status_code == 201, made.text
            file = tmp / f"installer-{index}.json"
            file.write_text(made.json()["installer"])
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bastion",
                    "jump-client",
                    "install",
                    str(file),
                    "--dir",
                    str(tmp / f"endpoint-{index}"),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
        yield client


def in_an_hour() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0).isoformat()


def test_the_api_refuses_until_the_clients_going_offline_are_acknowledged(
    api: httpx.Client,
) -> None:
    download(api, "site 1.1.0")
    request: dict[str, Any] = {"releases": ["site 1.1.0"], "not_before": in_an_hour()}
    refused = api.post(INSTALL, json=request)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["type"] == "ClientsWouldGoOfflineError"
    assert "2 of 2 Jump Clients do not trust them" in error["message"]
    assert api.get(INSTALL).json()["state"] == "idle"
    accepted = api.post(INSTALL, json={**request, "accept_offline_clients": True})
    assert accepted.status_code == 202, accepted.text
    try:
        plan = accepted.json()["plan"]
        assert plan["offline_clients"] == [{"release": "site 1.1.0", "offline": 2, "total": 2}]
        assert ("updates.offline_clients_acknowledged", "site 1.1.0") in audit_actions(api)
    finally:
        assert api.delete(INSTALL).status_code == 200


def test_the_console_names_the_count_and_installs_nothing_when_told_no(
    world: World, appliance: RunningAppliance, api: httpx.Client
) -> None:
    answered = CliRunner().invoke(
        bastion_command,
        [
            "appliance",
            "install",
            "site 1.1.0",
            "--at",
            in_an_hour(),
            "--no-wait",
            "--data",
            str(appliance.data_dir),
        ],
        env=world.env(),
        input="n\n",
    )
    assert "2 of 2 Jump Clients do not trust them and would go offline" in answered.output
    assert answered.exit_code != 0, answered.output
    assert api.get(INSTALL).json()["state"] == "idle"


def test_a_release_that_also_carries_the_sites_own_ca_is_planned_without_a_word(
    world: World, appliance: RunningAppliance, api: httpx.Client
) -> None:
    both = world.wheels.parent / "both-cas.pem"
    next_ca = world.wheels.parent / "next-ca.pem"
    both.write_bytes(
        next_ca.read_bytes() + (appliance.data_dir / "certs" / "internal-ca.pem").read_bytes()
    )
    wheel = project_wheel("1.2.0", world.wheels)
    world.vendor.publish_wheel("site", "1.2.0", wheel, "--site", S, "--trust-anchors", str(both))
    download(api, "site 1.2.0")
    planned = api.post(INSTALL, json={"releases": ["site 1.2.0"], "not_before": in_an_hour()})
    assert planned.status_code == 202, planned.text
    try:
        assert planned.json()["plan"]["offline_clients"] == []
    finally:
        assert api.delete(INSTALL).status_code == 200
