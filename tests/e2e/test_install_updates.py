"""A site upgrade end to end: vendor publishes, appliance checks, downloads and installs.

The releases are the project's own wheel built with a higher version. The site
release needs base 1.1, so it cannot be installed first; once the base release
is installed it can (R22). Afterwards the site serves 1.1.0, Status > Basics
says so, and the old slot is kept as `previous`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from bastion.supervisor.slots import Releases
from tests.integration._update_env import Vendor, service
from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.installs import wait_installed
from tests.support.releases import project_wheel
from tests.support.web import change_password, sign_in

SERVICE_HOST, HOST = "127.0.0.93", "127.0.0.94"
S = "support.acme.example"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    root = tmp_path_factory.mktemp("install-e2e")
    vendor = Vendor.for_site(root / "vendor", S)
    wheel = project_wheel("1.1.0", root / "wheels", new_table="install_probe")
    vendor.publish_wheel("base", "1.1.0", wheel)
    vendor.publish_wheel("site", "1.1.0", wheel, "--site", S, "--requires", "base>=1.1")
    root_file = root / "root.json"
    root_file.write_bytes(vendor.trusted_root())
    with service(vendor, SERVICE_HOST) as running:
        env = {
            **running.env(),
            "BASTION_UPDATE_SITE": S,
            "BASTION_UPDATE_TRUSTED_ROOT": str(root_file),
            "BASTION_INSTALL_PROBATION_SECONDS": "2",
        }
        with start_appliance(root, host=HOST, env=env) as running:
            vendor.enrol(S, running.data_dir)
            yield running


def reasons(answer: httpx.Response) -> dict[str, str]:
    return {r["name"]: r["reason"] for r in answer.json()["releases"]}


def test_base_then_site_from_the_update_service(appliance: RunningAppliance) -> None:
    token = get_token(appliance, create_client(appliance, "upgrader")).json()["access_token"]
    with appliance.client(headers=bearer(token), timeout=60) as api:
        offered = reasons(api.post("/api/v1/updates/check"))
        assert offered["site 1.1.0"].startswith("blocked: needs base>=1.1")
        for name in ("base 1.1.0", "site 1.1.0"):
            assert api.post("/api/v1/updates/downloads", json={"release": name}).status_code == 200

        refused = api.post("/api/v1/updates/install", json={"releases": ["site 1.1.0"]})
        assert refused.status_code == 409
        assert "base>=1.1" in refused.json()["error"]["message"]

        started = api.post("/api/v1/updates/install", json={"releases": ["base 1.1.0"]})
        assert started.status_code == 202, started.text
        status = wait_installed(api)
        assert status["base_version"] == "1.1.0"

        assert reasons(api.post("/api/v1/updates/check"))["site 1.1.0"] == "installable"
        started = api.post("/api/v1/updates/install", json={"releases": ["site 1.1.0"]})
        assert started.status_code == 202, started.text
        status = wait_installed(api)
        history = status["history"]
        assert [h["outcome"] for h in history] == ["installed", "installed"]
        assert api.get("/check_health").json()["version"] == "1.1.0"

    assert Releases(appliance.data_dir).target("previous") == "site-1.0.0"
    with appliance.client() as browser:
        sign_in(browser, "admin", "password")
        change_password(browser, "password", "a brand new secret phrase")
        basics = browser.get("/appliance", follow_redirects=True)
        assert basics.status_code == 200
        assert re.search(r'id="product-version">1\.1\.0<', basics.text)
        assert re.search(r'id="base-version">1\.1\.0 ', basics.text)
