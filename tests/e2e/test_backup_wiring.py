"""A backup made by the page, the API or the console restores through the page, the API or
the console onto another appliance, and in every combination the restored default
certificate serves and no private key lies unsealed anywhere on the new appliance.

The console once wired backups differently from the web (no key vault): a backup
downloaded from the page and restored with `bastion backup restore` left the private key
in plain PEM in the database, and a backup made with `bastion backup create` carried keys
sealed under the old appliance's master key. Real appliance processes, real TLS, the
real `bastion` command.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_site_migration import served_fingerprint
from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.web import change_password, csrf_of, sign_in

SITE = "wiring.example.test"
ADMIN = "a long and private phrase"
PASSPHRASE = "a wiring test passphrase"
PLAIN_KEY_MARKERS = (b"BEGIN PRIVATE KEY", b"BEGIN EC PRIVATE KEY", b"BEGIN RSA PRIVATE KEY")


def bastion(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The `bastion` command, as an administrator runs it on the appliance's console."""
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        env={**os.environ, "BASTION_BACKUP_PASSPHRASE": PASSPHRASE, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def first_sign_in(appliance: RunningAppliance) -> None:
    with appliance.client() as browser:
        assert sign_in(browser, "admin", "password").status_code == 303
        assert change_password(browser, "password", ADMIN).status_code == 303


@contextmanager
def signed_in(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    with appliance.client(timeout=120) as browser:
        assert sign_in(browser, "admin", ADMIN).status_code == 303
        yield browser


def api(appliance: RunningAppliance, name: str) -> httpx.Client:
    token = get_token(appliance, create_client(appliance, name)).json()["access_token"]
    return appliance.client(headers=bearer(token), timeout=120)


# -- three ways to make a backup ---------------------------------------------------------


def backup_from_page(source: RunningAppliance, _out: Path) -> bytes:
    with signed_in(source) as browser:
        page = browser.get("/login/management/software")
        fields = {
            "csrf_token": csrf_of(page),
            "passphrase": PASSPHRASE,
            "confirm_passphrase": PASSPHRASE,
        }
        made = browser.post("/login/management/software/backup", data=fields)
    assert made.status_code == 200, made.text
    return made.content


def backup_from_api(source: RunningAppliance, _out: Path) -> bytes:
    with api(source, "wiring-backup") as client:
        made = client.post("/api/v1/backups", json={"passphrase": PASSPHRASE})
    assert made.status_code == 200, made.text
    return made.content


def backup_from_console(source: RunningAppliance, out: Path) -> bytes:
    made = bastion("backup", "create", str(out), "--data", str(source.data_dir))
    assert made.returncode == 0, made.stdout + made.stderr
    (written,) = out.glob("*.bastion")
    return written.read_bytes()


# -- three ways to restore one -------------------------------------------------------------


def restore_on_page(target: RunningAppliance, backup: Path, _round: int) -> None:
    with signed_in(target) as browser:
        page = browser.get("/login/management/software")
        with backup.open("rb") as upload:
            restored = browser.post(
                "/login/management/software/restore",
                data={"csrf_token": csrf_of(page), "passphrase": PASSPHRASE},
                files={"backup": (backup.name, upload, "application/octet-stream")},
            )
    assert restored.status_code == 200, restored.text
    assert "restored" in restored.text.lower()


def restore_by_api(target: RunningAppliance, backup: Path, round_: int) -> None:
    with api(target, f"wiring-restore-{round_}") as client:
        restored = client.post(
            "/api/v1/backups/restore",
            content=backup.read_bytes(),
            headers={"X-Backup-Passphrase": PASSPHRASE},
        )
    assert restored.status_code == 200, restored.text


def restore_on_console(target: RunningAppliance, backup: Path, _round: int) -> None:
    restored = bastion("backup", "restore", str(backup), "--data", str(target.data_dir))
    assert restored.returncode == 0, restored.stdout + restored.stderr


MAKERS: dict[str, Callable[[RunningAppliance, Path], bytes]] = {
    "page": backup_from_page,
    "api": backup_from_api,
    "console": backup_from_console,
}
RESTORERS: dict[str, Callable[[RunningAppliance, Path, int], None]] = {
    "page": restore_on_page,
    "api": restore_by_api,
    "console": restore_on_console,
}


def plain_keys_on_disk(data_dir: Path) -> list[str]:
    """Files under the data directory that hold a private key in the clear."""
    found = []
    for path in data_dir.rglob("*"):
        if path.is_file() and any(m in path.read_bytes() for m in PLAIN_KEY_MARKERS):
            found.append(str(path.relative_to(data_dir)))
    return found


def unsealed_keys_in_database(data_dir: Path) -> int:
    uri = f"file:{data_dir / 'db' / 'bastion.sqlite'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute("SELECT private_key FROM certificates WHERE private_key IS NOT NULL")
        return sum(1 for (key,) in rows if b"PRIVATE KEY" in key)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    tmp = tmp_path_factory.mktemp("source")
    with start_appliance(tmp, host="127.0.0.31", extra_args=["--hostname", SITE]) as running:
        first_sign_in(running)
        yield running


@pytest.fixture(scope="module")
def backups(source: RunningAppliance, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One backup of the source site made each way, as files."""
    made = {}
    for how, make in MAKERS.items():
        out = tmp_path_factory.mktemp(f"backup-{how}")
        path = out / f"made-by-{how}.bastion"
        data = make(source, out)
        path.write_bytes(data)
        made[how] = path
    return made


@pytest.mark.parametrize("restore_with", list(RESTORERS))
def test_every_backup_restores_onto_another_appliance_with_its_keys_sealed(
    restore_with: str,
    source: RunningAppliance,
    backups: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    expected = served_fingerprint(source)
    host = {"page": "127.0.0.32", "api": "127.0.0.33", "console": "127.0.0.34"}[restore_with]
    with ExitStack() as stack:
        tmp = tmp_path_factory.mktemp(f"target-{restore_with}")
        target = stack.enter_context(
            start_appliance(tmp, host=host, extra_args=["--hostname", SITE])
        )
        first_sign_in(target)
        assert served_fingerprint(target) != expected
        target.trust.append(source.ca_file)  # the restored certificate is the source's
        target.verify_hostname = False
        for round_, (made_by, backup) in enumerate(backups.items()):
            RESTORERS[restore_with](target, backup, round_)
            combination = f"made by the {made_by}, restored by the {restore_with}"
            assert served_fingerprint(target) == expected, combination
            assert plain_keys_on_disk(target.data_dir) == [], combination
            assert unsealed_keys_in_database(target.data_dir) == 0, combination
