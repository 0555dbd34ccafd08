"""The integration client against a real appliance process over TLS: a real API client,
real sessions (a Jump Client process, the access console jumping to it), and the client
itself run as `bastion integration-client run`, as a timer or a service runs it.

A pass saves every ended session's report and recording, verified; the next fetches
nothing again; a new session is fetched alone; a pass killed midway leaves no partial
file under a final name and the next completes it; a saved file changed on disk is
fetched again and reported; a client of another version refuses (exit 3) naming the
version to install; a wrong secret, an untrusted certificate and an unreachable site are
said as such.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.backups.container import open_backup
from tests.integration.test_api import create_client
from tests.support.appliance import free_port
from tests.support.endpoints import Client, eventually
from tests.support.releases import project_wheel
from tests.support.sessions import (
    Site,
    clients,
    console,
    online_endpoint,
    representative,
    session_site,
    signed_in_console,
)

HOST = "127.0.0.121"
SITE = "integration.example.test"
BACKUP_PASSPHRASE = "a long backup pass phrase 7"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with session_site(tmp_path_factory.mktemp("integration"), HOST, SITE) as running:
        yield running


@pytest.fixture(scope="module")
def endpoint(site: Site) -> Iterator[Client]:
    with online_endpoint(site) as client:
        yield client


@pytest.fixture(scope="module")
def home(site: Site, endpoint: Client) -> Path:
    representative(site, "rep", ["Servers"])
    return signed_in_console(site, "rep")


@pytest.fixture(scope="module")
def secret_file(site: Site) -> tuple[str, Path]:
    creds = create_client(site.appliance, "integration")
    path = site.tmp / "integration.secret"
    path.write_text(creds["client_secret"] + "\n")
    path.chmod(0o600)
    return creds["client_id"], path


def ended(site: Site) -> dict[str, dict[str, Any]]:
    found = site.api.get("/api/v1/sessions", params={"limit": 500}).json()["sessions"]
    return {s["id"]: s for s in found if not s["live"] and s["recording_sha256"]}


def new_session(site: Site, home: Path, text: str) -> str:
    """A session run to its end by the access console; its id once its record is final."""
    before = set(ended(site))
    name = clients(site)[0]["name"]
    done = console(home, "jump", name, stdin=f"echo {text}\nexit 0\n")
    assert done.returncode == 0, done.stdout + done.stderr
    eventually(lambda: len(set(ended(site)) - before) == 1, timeout=30, what="the record")
    (made,) = set(ended(site)) - before
    return made


def command(site: Site, secret: tuple[str, Path], into: Path, *extra: str) -> list[str]:
    client_id, path = secret
    appliance = site.appliance
    return [
        sys.executable, "-m", "bastion", "integration-client", "run",
        "--site", f"https://{appliance.host}:{appliance.port}",
        "--client-id", client_id, "--client-secret-file", str(path),
        "--ca-file", str(appliance.ca_file), "--dir", str(into), *extra,
    ]  # fmt: skip


def pull(
    site: Site, secret: tuple[str, Path], into: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(site, secret, into, "--once", *extra),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def saved_ids(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.split()[1] for line in done.stdout.splitlines() if line.startswith("saved ")]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_all_verified(into: Path, records: dict[str, dict[str, Any]]) -> None:
    """Every file under a final name is whole: its recording matches its record."""
    for report in (into / "reports").glob("*.json"):
        body = json.loads(report.read_text())
        assert body == records[body["id"]]
        assert sha256(into / "recordings" / f"{body['id']}.cast") == body["recording_sha256"]
    for cast in (into / "recordings").glob("*.cast"):
        assert sha256(cast) == records[cast.stem]["recording_sha256"]


def test_a_pass_saves_what_ended_and_the_next_fetches_only_what_is_new(
    site: Site, home: Path, secret_file: tuple[str, Path], tmp_path: Path
) -> None:
    first, second = new_session(site, home, "first-one"), new_session(site, home, "second-two")
    into = tmp_path / "pulled"
    done = pull(site, secret_file, into)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(saved_ids(done)) == set(ended(site)) >= {first, second}
    assert_all_verified(into, ended(site))
    assert b"first-one" in (into / "recordings" / f"{first}.cast").read_bytes()
    state = json.loads((into / "state.json").read_text())
    assert set(state["saved"]) == set(ended(site))

    again = pull(site, secret_file, into)
    assert again.returncode == 0 and saved_ids(again) == [], again.stdout + again.stderr
    assert "0 new session(s) saved" in again.stdout

    third = new_session(site, home, "third-three")
    later = pull(site, secret_file, into)
    assert later.returncode == 0 and saved_ids(later) == [third], later.stdout + later.stderr
    assert_all_verified(into, ended(site))
    assert "Traceback" not in site.appliance.log()


def test_a_saved_file_that_changed_is_fetched_again_and_reported(
    site: Site, home: Path, secret_file: tuple[str, Path], tmp_path: Path
) -> None:
    made = new_session(site, home, "to-be-tampered")
    into = tmp_path / "pulled"
    assert pull(site, secret_file, into).returncode == 0
    cast = into / "recordings" / f"{made}.cast"
    cast.write_bytes(cast.read_bytes().replace(b"to-be-tampered", b"to-be-TAMPERED"))
    done = pull(site, secret_file, into)
    assert done.returncode == 0 and saved_ids(done) == [made], done.stdout + done.stderr
    assert f"session {made}: a saved file no longer matched its digest" in done.stderr
    assert sha256(cast) == ended(site)[made]["recording_sha256"]


def test_a_pass_killed_midway_is_completed_by_the_next(
    site: Site, home: Path, secret_file: tuple[str, Path], tmp_path: Path
) -> None:
    while len(ended(site)) < 4:
        new_session(site, home, f"more-{len(ended(site))}")
    into = tmp_path / "pulled"
    with subprocess.Popen(
        command(site, secret_file, into, "--once"), stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        process.kill()  # right after the first session saved: in the middle of the pass
        process.wait(timeout=20)
    assert line.startswith("saved "), line
    records = ended(site)
    assert_all_verified(into, records)
    before = set(json.loads((into / "state.json").read_text())["saved"])
    assert before and before < set(records)

    done = pull(site, secret_file, into)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(saved_ids(done)) == set(records) - before
    assert_all_verified(into, records)
    assert not list(into.rglob("*.part"))
    assert len(list((into / "recordings").glob("*.cast"))) == len(records)


def test_sigterm_ends_the_schedule(
    site: Site, home: Path, secret_file: tuple[str, Path], tmp_path: Path
) -> None:
    with subprocess.Popen(
        command(site, secret_file, tmp_path / "pulled", "--every", "1h"),
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        while "Pass done" not in (line := process.stdout.readline()):
            assert line, "the client ended before its first pass was done"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_a_client_of_another_version_refuses_and_names_the_version(
    site: Site, secret_file: tuple[str, Path], tmp_path: Path
) -> None:
    wheel = project_wheel("1.1.0", tmp_path / "wheels")
    installed = tmp_path / "client-1.1.0"
    with zipfile.ZipFile(wheel) as unpacked:
        unpacked.extractall(installed)
    site_version = site.api.get("/api/v1/console/about").json()["site_version"]
    assert site_version != "1.1.0"
    into = tmp_path / "pulled"
    done = pull(site, secret_file, into, env={"PYTHONPATH": str(installed)})
    assert done.returncode == 3, done.stdout + done.stderr
    assert (
        f"The site runs Bastion {site_version}; this integration client is 1.1.0. "
        f"Install the integration client {site_version} (pip install bastion=={site_version}"
    ) in done.stderr
    assert not into.exists() or not list((into / "reports").glob("*"))


def test_a_wrong_secret_an_untrusted_certificate_and_no_site_are_said_as_such(
    site: Site, secret_file: tuple[str, Path], tmp_path: Path
) -> None:
    client_id, _ = secret_file
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-secret\n")
    done = pull(site, (client_id, wrong), tmp_path / "a")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "refused the sign-in" in done.stderr and "--client-secret-file" in done.stderr

    plain = [a for a in command(site, secret_file, tmp_path / "b", "--once")]
    at = plain.index("--ca-file")
    del plain[at : at + 2]
    untrusted = subprocess.run(plain, capture_output=True, text=True, timeout=60)
    assert untrusted.returncode == 1
    assert "TLS: The certificate" in untrusted.stderr and "--ca-file" in untrusted.stderr

    closed = [a.replace(str(site.appliance.port), str(free_port(HOST))) for a in plain]
    unreachable = subprocess.run(closed, capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 1 and "Cannot reach" in unreachable.stderr


def test_with_a_passphrase_each_pass_keeps_a_backup_the_site_reads_as_its_own(
    site: Site, secret_file: tuple[str, Path], tmp_path: Path
) -> None:
    passphrase = tmp_path / "backup.passphrase"
    passphrase.write_text(BACKUP_PASSPHRASE + "\n")
    into = tmp_path / "pulled"
    for _ in range(3):
        done = pull(
            site, secret_file, into, "--backup-passphrase-file", str(passphrase),
            "--keep-backups", "2",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        time.sleep(1.1)  # backups are named to the second
    kept = sorted((into / "backups").glob("*.bastion"))
    assert len(kept) == 2 and all(p.name.startswith(f"{SITE}-") for p in kept)
    assert not list(into.rglob("*.part"))
    with kept[-1].open("rb") as f:
        assert open_backup(f, BACKUP_PASSPHRASE).verify()  # whole, and under that passphrase

    short = tmp_path / "short.passphrase"
    short.write_text("short\n")
    refused = pull(site, secret_file, into, "--backup-passphrase-file", str(short))
    assert refused.returncode == 1 and "refused to make a backup" in refused.stderr
    assert "at least 12 characters" in refused.stderr
    assert len(list((into / "backups").glob("*.bastion"))) == 2
