"""`/appliance > Updates`, its API and its command line: real appliances, a real update service.

Appliance A reaches the update service; appliance B, of the same site, cannot
and gets its releases through an Appliance Download Key and an offline bundle
(Manual Installation). Both start on base 1.0 / site 1.0.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from _update_env import UpdateService, Vendor, free_port, service, tree_bytes
from typer.testing import CliRunner

from bastion.entrypoints.cli import app as bastion_command
from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.web import change_password, csrf_of, sign_in

SERVICE_HOST, A_HOST, B_HOST = "127.0.0.71", "127.0.0.72", "127.0.0.73"
S = "support.acme.example"
NEW_PASSWORD = "a brand new secret phrase"
CHANGED: set[Path] = set()
KEY = re.compile(r'<textarea id="download-key"[^>]*>([^<]+)</textarea>')


@dataclass
class World:
    vendor: Vendor
    service: UpdateService
    root_file: Path

    @property
    def url(self) -> str:
        return self.service.url

    def env(self, url: str) -> dict[str, str]:
        """The documented settings, as the environment: service, its CA, site, root."""
        return {
            **self.service.env(),
            "BASTION_UPDATE_SERVICE_URL": url,
            "BASTION_UPDATE_SITE": S,
            "BASTION_UPDATE_TRUSTED_ROOT": str(self.root_file),
            "BASTION_UPDATE_UPLOAD_LIMIT_BYTES": str(1024 * 1024),
        }

    def enrol(self, appliance: RunningAppliance) -> None:
        self.vendor.enrol(S, appliance.data_dir, appliance.env)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("appliance-updates")
    vendor = Vendor.for_site(root / "vendor", S)
    vendor.release("base", "1.1", payload=os.urandom(600_000))
    vendor.release("site", "1.1", "--site", S, "--requires", "base>=1.1")
    vendor.release("license", "2", "--site", S, "--representatives", "25", "--endpoints", "500")
    for spec in ("base:1.1", f"site:1.1@{S}", f"license:2@{S}"):
        vendor.admin("open-wave", spec, "--wave", "1")
    root_file = root / "root.json"
    root_file.write_bytes(vendor.trusted_root())
    with service(vendor, SERVICE_HOST) as running:
        yield World(vendor, running, root_file)


def api_client(appliance: RunningAppliance, name: str) -> httpx.Client:
    token = get_token(appliance, create_client(appliance, name)).json()["access_token"]
    return appliance.client(headers=bearer(token), timeout=60)


@contextmanager
def browser(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    """Signed in as admin; the first sign-in on an appliance chooses the new password."""
    with appliance.client(timeout=60) as client:
        if appliance.data_dir in CHANGED:
            sign_in(client, "admin", NEW_PASSWORD)
        else:
            sign_in(client, "admin", "password")
            change_password(client, "password", NEW_PASSWORD)
            CHANGED.add(appliance.data_dir)
        yield client


@pytest.fixture(scope="module")
def online(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    tmp = tmp_path_factory.mktemp("online")
    with start_appliance(tmp, host=A_HOST, env=world.env(world.url)) as running:
        world.enrol(running)
        yield running


@pytest.fixture(scope="module")
def offline(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    lost = f"http://{B_HOST}:{free_port(B_HOST)}"
    tmp = tmp_path_factory.mktemp("offline")
    with start_appliance(tmp, host=B_HOST, env=world.env(lost)) as running:
        yield running


def states(body: dict[str, object]) -> dict[str, str]:
    return {r["name"]: r["reason"] for r in body["releases"]}  # type: ignore[attr-defined,index]


def actions(api: httpx.Client) -> list[str]:
    entries = api.get("/api/v1/audit", params={"limit": 100}).json()["entries"]
    return [e["action"] for e in entries]


def test_check_shows_what_is_blocked_and_by_what(online: RunningAppliance) -> None:
    with api_client(online, "check") as api:
        checked = api.post("/api/v1/updates/check")
        assert checked.status_code == 200, checked.text
        found = states(checked.json())
        assert found["base 1.1"] == "installable"
        assert found["site 1.1"] == "blocked: needs base>=1.1 (install base 1.1 first)"
        assert checked.json()["installed"] == {"base": "1.0.0", "site": "1.0.0"}
        assert states(api.get("/api/v1/updates").json()) == found
        assert "updates.check" in actions(api)


def wait_for_job(page: httpx.Client, location: str) -> dict[str, object]:
    job_id = location.split("job=")[1]
    for _ in range(200):
        job: dict[str, object] = page.get(f"/appliance/updates/jobs/{job_id}").json()
        if job["state"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError("the download did not finish")


def test_the_page_downloads_with_progress_and_verifies(online: RunningAppliance) -> None:
    with browser(online) as page:
        shown = page.get("/appliance/updates")
        assert shown.status_code == 200 and "Available Updates" in shown.text
        assert 'src="/static/updates.js"' not in shown.text
        token = csrf_of(shown)
        checked = page.post("/appliance/updates/check", data={"csrf_token": token})
        assert "blocked: needs base&gt;=1.1 (install base 1.1 first)" in checked.text
        started = page.post(
            "/appliance/updates/download", data={"csrf_token": token, "release": "base 1.1"}
        )
        assert started.status_code == 303
        running = page.get(started.headers["location"])
        assert "download-progress" in running.text or "downloaded and verified" in running.text
        job = wait_for_job(page, started.headers["location"])
        assert job["state"] == "done", job
        assert job["done"] == job["total"] and int(job["total"]) > 400_000  # type: ignore[call-overload]
        after = page.get(started.headers["location"]).text
        assert "base 1.1 downloaded and verified" in after and "downloaded, verified" in after
        assert page.get("/static/updates.js").status_code == 200


def test_a_license_add_on_changes_the_counts_at_once(online: RunningAppliance) -> None:
    with api_client(online, "license") as api:
        api.post("/api/v1/updates/check")
        early = api.post("/api/v1/updates/license", json={"release": "license 2"})
        assert early.status_code == 409 and "not downloaded yet" in early.text
        done = api.post("/api/v1/updates/downloads", json={"release": "license 2"})
        assert done.status_code == 200, done.text
        installed = api.post("/api/v1/updates/license", json={"release": "license 2"})
        assert installed.status_code == 200, installed.text
        assert installed.json()["representatives"] == 25
        listed = api.get("/api/v1/updates").json()
        assert listed["license"]["endpoints"] == 500
        assert listed["installed"]["license"] == "2"
        assert states(listed)["license 2"] == "installed"
        assert {"updates.download", "updates.install_license"} <= set(actions(api))
        counted = api.get("/api/v1/sessions/licence").json()
        assert counted["license_version"] == "2"
        assert counted["representatives"] == {"in_sessions": 0, "licensed": 25, "names": []}
        assert counted["endpoints"] == {"in_sessions": 0, "licensed": 500, "endpoints": []}
    with browser(online) as page:
        basics = page.get("/appliance/status/basics").text
    assert 'id="representatives-now">0<' in basics
    assert 'id="licensed-representatives">25<' in basics
    assert 'id="licensed-endpoints">500<' in basics
    assert "licence add-on 2:" in basics


def test_unreachable_service_points_to_manual_installation(offline: RunningAppliance) -> None:
    with api_client(offline, "unreachable") as api:
        checked = api.post("/api/v1/updates/check")
        assert checked.status_code == 503
        error = checked.json()["error"]
        assert error["type"] == "UpdateUnreachableError"
        assert "The update service cannot be reached" in error["message"]
        assert "Manual Installation" in error["message"]
        assert "updates.check.failed" in actions(api)
    with browser(offline) as page:
        shown = page.get("/appliance/updates")
        failed = page.post("/appliance/updates/check", data={"csrf_token": csrf_of(shown)})
    assert failed.status_code == 503 and "Manual Installation" in failed.text
    assert "Manual Installation on /appliance &gt; Updates" not in failed.text  # the page it is on


def bundle_for(world: World, key: str) -> bytes:
    answer = world.service.post("/api/v1/bundles", json={"download_key": key})
    assert answer.status_code == 200, answer.text
    return answer.content


def offers(world: World, key: str) -> dict[str, str]:
    answer = world.service.post("/api/v1/offers", json={"download_key": key})
    assert answer.status_code == 200, answer.text
    return {r["release"]: r["state"] for r in answer.json()["releases"]}


def test_manual_installation_through_a_download_key(
    world: World, offline: RunningAppliance
) -> None:
    world.enrol(offline)
    with api_client(offline, "manual") as api:
        key = api.post("/api/v1/updates/download-key").json()
        assert key["download_key"].startswith("BDK1.") and key["made_at"]
        assert offers(world, key["download_key"])["base 1.1"] == "installable"
        bundle = bundle_for(world, key["download_key"])
        tuf_before = tree_bytes(offline.data_dir / "tuf")
        cut = api.post("/api/v1/updates/bundles", content=bundle[: len(bundle) // 2])
        assert cut.status_code == 400, cut.text
        assert "incomplete or damaged" in cut.json()["error"]["message"]
        assert tree_bytes(offline.data_dir / "tuf") == tuf_before
        imported = api.post("/api/v1/updates/bundles", content=bundle)
        assert imported.status_code == 200, imported.text
        rows = {r["name"]: r for r in imported.json()["releases"]}
        assert rows["base 1.1"]["downloaded"] and rows["base 1.1"]["state"] == "installable"
        assert rows["site 1.1"]["state"] == "blocked"
        assert sorted(imported.json()["stored"]) == ["base 1.1", "license 2", "site 1.1"]
        assert imported.json()["imported_before"] is None
        twice = api.post("/api/v1/updates/bundles", content=bundle)
        assert twice.status_code == 200, twice.text
        assert twice.json()["stored"] == [] and twice.json()["imported_before"]
        assert "this same bundle was already imported on" in twice.json()["message"]
        again = api.post("/api/v1/updates/download-key").json()["download_key"]
        assert again != key["download_key"]
        assert offers(world, again)["base 1.1"] == "taken"
        found = actions(api)
        assert {"updates.download_key", "updates.import_bundle"} <= set(found)
        assert "updates.import_bundle.failed" in found


def damaged(bundle: bytes, part: str) -> bytes:
    """The bundle with the last byte of its package `part` (e.g. "base-1.1") flipped."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle)) as old,
        tarfile.open(fileobj=out, mode="w") as new,
    ):
        for member in old.getmembers():
            data = old.extractfile(member).read()  # type: ignore[union-attr]
            if part in member.name:
                data = data[:-1] + bytes([data[-1] ^ 0x01])
            new.addfile(member, io.BytesIO(data))
    return out.getvalue()


def test_a_new_key_gets_the_releases_again_and_a_damaged_copy_is_refused(
    world: World, offline: RunningAppliance
) -> None:
    """After a handout, the appliance holds base 1.1; the vendor hands it out again for a new
    key; a bundle whose copy of it is damaged is refused all the same, nothing changed."""
    world.enrol(offline)
    with api_client(offline, "again") as api:
        first = api.post("/api/v1/updates/download-key").json()["download_key"]
        world.service.post("/api/v1/bundles", json={"download_key": first})
        used = world.service.post("/api/v1/bundles", json={"download_key": first})
        assert used.status_code == 409 and "already answered" in used.json()["detail"]
        key = api.post("/api/v1/updates/download-key").json()["download_key"]
        bundle = bundle_for(world, key)
        before = tree_bytes(offline.data_dir / "tuf") | tree_bytes(offline.data_dir / "blobs")
        refused = api.post("/api/v1/updates/bundles", content=damaged(bundle, "base-1.1"))
        assert refused.status_code == 400, refused.text
        assert "does not match its signed hash" in refused.json()["error"]["message"]
        after = tree_bytes(offline.data_dir / "tuf") | tree_bytes(offline.data_dir / "blobs")
        assert after == before
        imported = api.post("/api/v1/updates/bundles", content=bundle)
        assert imported.status_code == 200, imported.text
        assert "base 1.1" in imported.json()["already_stored"]


def test_the_page_shows_a_fresh_key_and_refuses_oversized_bundles(
    offline: RunningAppliance,
) -> None:
    with browser(offline) as page:
        first = page.get("/appliance/updates").text
        second = page.get("/appliance/updates")
        assert "Appliance Download Key" in first and 'id="download-key-time"' in first
        shown = [KEY.search(text).group(1) for text in (first, second.text)]  # type: ignore[union-attr]
        assert shown[0].startswith("BDK1.") and shown[0] != shown[1]
        big = page.post(
            "/appliance/updates/bundle",
            data={"csrf_token": csrf_of(second)},
            files={"bundle": ("big.tar", b"\0" * (2 * 1024 * 1024))},
        )
        assert big.status_code == 400 and "limit for update bundles" in big.text


def test_the_page_installs_a_license_from_a_bundle(offline: RunningAppliance) -> None:
    with browser(offline) as page:
        shown = page.get("/appliance/updates")
        assert "downloaded, verified" in shown.text
        installed = page.post(
            "/appliance/updates/license",
            data={"csrf_token": csrf_of(shown), "release": "license 2"},
        )
        assert installed.status_code == 200, installed.text
        assert "License 2 installed: 25 representatives, 500 endpoints" in installed.text
        again = page.post(
            "/appliance/updates/license",
            data={"csrf_token": csrf_of(shown), "release": "license 2"},
        )
        assert again.status_code == 409 and "license 2 is installed" in again.text
        basics = page.get("/appliance/status/basics").text
    assert 'id="licensed-endpoints">500<' in basics


def test_command_line_checks_and_prints_a_download_key(
    world: World, online: RunningAppliance
) -> None:
    runner, data = CliRunner(), ["--data", str(online.data_dir)]
    checked = runner.invoke(
        bastion_command, ["appliance", "updates", "check", *data], env=online.env
    )
    assert checked.exit_code == 0, checked.output
    assert "base 1.1" in checked.output and "downloaded, verified" in checked.output
    got = runner.invoke(
        bastion_command, ["appliance", "updates", "download", "site 1.1", *data], env=online.env
    )
    assert got.exit_code == 0, got.output
    assert "site 1.1 downloaded and verified" in got.output
    key = runner.invoke(
        bastion_command, ["appliance", "updates", "download-key", *data], env=online.env
    )
    assert key.exit_code == 0 and key.output.startswith("BDK1.")
    assert offers(world, key.output.strip())["base 1.1"] == "installable"
    bundle = online.data_dir.parent / "for-a.tar"
    bundle.write_bytes(bundle_for(world, key.output.strip()))
    imported = runner.invoke(
        bastion_command,
        ["appliance", "updates", "import-bundle", str(bundle), *data],
        env=online.env,
    )
    assert imported.exit_code == 0, imported.output
    bundle.write_bytes(bundle.read_bytes()[:1000])
    cut = runner.invoke(
        bastion_command,
        ["appliance", "updates", "import-bundle", str(bundle), *data],
        env=online.env,
    )
    assert cut.exit_code == 2 and "incomplete or damaged" in cut.output
