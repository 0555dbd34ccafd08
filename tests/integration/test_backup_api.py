"""Backups through a real appliance: the API, the Software page and the command line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.web import change_password, csrf_of, sign_in

PASSPHRASE = "a passphrase for tests"
LIMIT = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    env = {"BASTION_BACKUP_UPLOAD_LIMIT_BYTES": str(LIMIT)}
    with start_appliance(tmp_path_factory.mktemp("backups"), host="127.0.0.47", env=env) as app:
        yield app


class Api(httpx.Client):
    """An API client that signs in again after a restore ended its token."""

    def __init__(self, appliance: RunningAppliance, credentials: dict[str, str]) -> None:
        super().__init__(base_url=appliance.url, verify=appliance.tls(), timeout=60)
        self.appliance, self.credentials = appliance, credentials
        self.renew()

    def renew(self) -> None:
        token = get_token(self.appliance, self.credentials).json()["access_token"]
        self.headers.update(bearer(token))


@pytest.fixture(scope="module")
def api(appliance: RunningAppliance) -> Iterator[Api]:
    with Api(appliance, create_client(appliance, "backup-job")) as client:
        yield client


def usernames(api: Api) -> list[str]:
    api.renew()
    return [a["username"] for a in api.get("/api/v1/accounts").json()]


def restore(api: Api, data: bytes, passphrase: str = PASSPHRASE) -> httpx.Response:
    api.renew()
    return api.post(
        "/api/v1/backups/restore", content=data, headers={"X-Backup-Passphrase": passphrase}
    )


def test_a_backup_downloads_inspects_and_restores(api: Api) -> None:
    api.post(
        "/api/v1/accounts",
        json={"username": "kept", "password": "a long pass phrase", "role": "representative"},
    )
    backup = api.post("/api/v1/backups", json={"passphrase": PASSPHRASE})
    assert backup.status_code == 200 and backup.content.startswith(b"\x89BASTION")
    assert "attachment" in backup.headers["content-disposition"]
    header = api.post("/api/v1/backups/inspect", content=backup.content).json()
    assert header["site"] == "localhost" and header["software version"] == "1.0.0"
    api.post(
        "/api/v1/accounts",
        json={"username": "later", "password": "a long pass phrase", "role": "representative"},
    )
    restored = restore(api, backup.content)
    assert restored.status_code == 200, restored.text
    assert restored.json()["automatic_backup"].endswith(".bastion")
    assert "later" not in usernames(api) and "kept" in usernames(api)


def test_bad_uploads_are_refused_and_change_nothing(api: Api) -> None:
    backup = api.post("/api/v1/backups", json={"passphrase": PASSPHRASE}).content
    before = usernames(api)
    flipped = bytearray(backup)
    flipped[len(flipped) // 2] ^= 0x40
    cases = [
        (restore(api, backup, "not the passphrase"), "passphrase is wrong"),
        (restore(api, backup[: len(backup) - 100]), "cut short"),
        (restore(api, bytes(flipped)), "damaged"),
        (restore(api, b"hello, this is a text file"), "not a Bastion backup"),
        (restore(api, b"\0" * (LIMIT + 1)), "larger than 2 MiB"),
    ]
    for response, message in cases:
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]["message"]
    assert usernames(api) == before


def test_a_weak_backup_passphrase_is_refused(api: Api) -> None:
    refused = api.post("/api/v1/backups", json={"passphrase": "short"})
    assert refused.status_code == 422 and "at least 12 characters" in refused.text


def test_the_software_page_downloads_and_restores(appliance: RunningAppliance, api: Api) -> None:
    with appliance.client(timeout=60) as browser:
        sign_in(browser, "admin", "password")
        change_password(browser, "password", "a brand new secret phrase")
        page = browser.get("/login/management/software")
        token = csrf_of(page)
        mismatch = browser.post(
            "/login/management/software/backup",
            data={
                "csrf_token": token,
                "passphrase": PASSPHRASE,
                "confirm_passphrase": "other one!!!!",
            },
        )
        assert mismatch.status_code == 400 and "differ" in mismatch.text
        download = browser.post(
            "/login/management/software/backup",
            data={"csrf_token": token, "passphrase": PASSPHRASE, "confirm_passphrase": PASSPHRASE},
        )
        assert download.content.startswith(b"\x89BASTION")
        files = {"backup": ("site.bastion", download.content, "application/octet-stream")}
        no_token = browser.post(
            "/login/management/software/restore", files=files, data={"passphrase": PASSPHRASE}
        )
        assert no_token.status_code == 403
        restored = browser.post(
            "/login/management/software/restore",
            files=files,
            data={"csrf_token": token, "passphrase": PASSPHRASE},
        )
        assert restored.status_code == 200 and "Site restored" in restored.text
        assert browser.get("/login/home").status_code == 303  # the session ended with the restore


def test_the_command_line_inspects_a_backup(appliance: RunningAppliance, tmp_path: Path) -> None:
    env = {"BASTION_BACKUP_PASSPHRASE": PASSPHRASE, "PATH": "/usr/bin:/bin"}
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "bastion",
            "backup",
            "create",
            str(tmp_path),
            "--data",
            str(appliance.data_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    (path,) = tmp_path.glob("*.bastion")
    inspected = subprocess.run(
        [sys.executable, "-m", "bastion", "backup", "inspect", str(path)],
        capture_output=True,
        text=True,
    )
    assert "software version: 1.0.0" in inspected.stdout and "site: localhost" in inspected.stdout
    not_backup = tmp_path / "notes.txt"
    not_backup.write_text("hello")
    refused = subprocess.run(
        [sys.executable, "-m", "bastion", "backup", "inspect", str(not_backup)],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "not a Bastion backup" in refused.stdout


def test_scheduled_backups_run_prune_and_report_failure(tmp_path: Path) -> None:
    env = {"BASTION_BACKUP_SCHEDULE_POLL_SECONDS": "0.5"}
    target = tmp_path / "scheduled"
    target.mkdir()
    for old in range(3):  # older scheduled backups of this site, beyond what is kept
        (target / f"localhost-scheduled-20200101T00000{old}Z.bastion").write_bytes(b"old")
    with (
        start_appliance(tmp_path, host="127.0.0.48", env=env) as app,
        Api(app, create_client(app, "ops")) as api,
    ):
        refused = api.put(
            "/api/v1/backups/schedule",
            json={
                "interval_hours": 1,
                "directory": "relative/dir",
                "keep": 2,
                "passphrase": PASSPHRASE,
            },
        )
        assert refused.status_code == 422 and "directory" in refused.text
        chosen = {
            "interval_hours": 1,
            "directory": str(target),
            "keep": 2,
            "passphrase": PASSPHRASE,
        }
        assert api.put("/api/v1/backups/schedule", json=chosen).status_code == 200
        last = wait_for_run(api)
        assert last["ok"], last
        files = sorted(p.name for p in target.iterdir())
        assert len(files) == 2 and files[-1].startswith("localhost-scheduled-2026")
        assert api.get("/api/v1/audit", params={"action": "backup.scheduled"}).json()["total"] == 1

        broken = {**chosen, "directory": "/proc/no-such-dir"}
        assert api.put("/api/v1/backups/schedule", json=broken).status_code == 200
        failed = wait_for_run(api, after=last["at"])
        assert not failed["ok"] and "/proc/no-such-dir" in failed["message"]
        with app.client() as browser:
            sign_in(browser, "admin", "password")
            change_password(browser, "password", "a brand new secret phrase")
            status = browser.get("/appliance/status/basics").text
        assert "The last scheduled backup failed." in status


def wait_for_run(api: Api, after: str | None = None) -> dict[str, object]:
    import time

    for _ in range(100):
        last = api.get("/api/v1/backups/schedule").json()["last_run"]
        if last and last["at"] != after:
            return dict(last)
        time.sleep(0.2)
    raise AssertionError("no scheduled backup ran")
