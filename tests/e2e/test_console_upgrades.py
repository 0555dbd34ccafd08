"""The access console upgrades itself against an upgraded site (R10), all real processes.

An appliance on 1.0.0 gets a site release 1.1.0 (this project's own wheel at another
version). A console of 1.0.0 signs in; its next `list` fetches the site's build, checks
it, installs it beside itself and runs `list` again in it, whose output appears; from
then on it runs 1.1.0. A build altered on the appliance is refused and the console goes
on as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import free_port, start_appliance
from tests.support.endpoints import eventually
from tests.support.installs import request_install, store_release, wait_idle
from tests.support.releases import project_wheel
from tests.support.sessions import PASSWORD, Site, representative

SITE = "console-upgrades.example.test"
HOST = "127.0.0.151"
UPGRADED = "The site runs 1.1.0; this console upgraded itself from 1.0.0."


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """An appliance that ran 1.0.0 and now runs the site release 1.1.0."""
    tmp = tmp_path_factory.mktemp("console-upgrades")
    port = free_port(HOST)
    env = {"BASTION_INSTALL_PROBATION_SECONDS": "1", "BASTION_PUBLIC_URL": f"https://{HOST}:{port}"}
    with start_appliance(tmp, host=HOST, port=port, env=env, extra_args=["--hostname", SITE]) as a:
        token = get_token(a, create_client(a, "console-upgrades")).json()["access_token"]
        with a.client(headers=bearer(token), timeout=120) as api:
            upgraded = Site(a, api, tmp)
            representative(upgraded, "rep", ["Servers"])
            wheel = project_wheel("1.1.0", tmp_path_factory.mktemp("wheels"))
            request_install(
                a.data_dir, store_release(a.data_dir, "site", "1.1.0", wheel, site=SITE)
            )
            last = wait_idle(a.data_dir, timeout=240)["history"][-1]
            assert last["outcome"] == "installed", last
            # the replaced worker may still answer on a kept-alive connection for an instant
            eventually(
                lambda: api.get("/api/v1/status").json()["product_version"] == "1.1.0",
                timeout=10,
                what="the new version serving",
            )
            yield upgraded


def console(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
    }
    for marker in ("BASTION_CONSOLE_BUILD", "BASTION_CONSOLE_UPGRADED_FROM"):
        env.pop(marker, None)
    return subprocess.run(
        [sys.executable, "-m", "bastion", "console", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def signed_in(site: Site, name: str) -> Path:
    home = site.tmp / name
    home.mkdir()
    url = f"https://{site.appliance.host}:{site.appliance.port}"
    done = console(
        home, "sign-in", "--site", url, "--ca-file", str(site.appliance.ca_file),
        "--username", "rep", "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return home


def test_the_console_upgrades_itself_and_runs_the_command_again(site: Site) -> None:
    home = signed_in(site, "console")
    about = console(home, "about")
    assert about.stdout.startswith("access console 1.0.0 (build "), about.stdout
    assert f"site {SITE} 1.1.0 (build " in about.stdout
    assert "upgrades itself to the site's version" in about.stdout

    listed = console(home, "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert listed.stderr.splitlines() == [UPGRADED]
    assert listed.stdout == "No Jump Items.\n"
    lib = home / "data" / "bastion" / "console" / "builds" / "1.1.0" / "lib"
    assert (lib / "bastion-1.1.0.dist-info").is_dir()
    current = json.loads((home / "data" / "bastion" / "console" / "current.json").read_text())
    assert current == {"version": "1.1.0", "lib": str(lib)}

    about = console(home, "about")
    assert about.stdout.startswith("access console 1.1.0 (build "), about.stdout
    assert "running the build it upgraded itself to" in about.stdout
    assert "upgrades itself" not in about.stdout
    again = console(home, "list")
    assert (again.returncode, again.stdout, again.stderr) == (0, "No Jump Items.\n", "")


def test_a_build_altered_on_the_appliance_is_refused_and_the_console_goes_on(
    site: Site,
) -> None:
    home = signed_in(site, "console-altered")
    stored = site.appliance.data_dir / "blobs" / "jump-clients" / "bastion-1.1.0.whl"
    original = stored.read_bytes()
    try:
        _alter(stored)
        listed = console(home, "list")
    finally:
        stored.write_bytes(original)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "could not upgrade itself to the site's 1.1.0" in listed.stderr
    assert "does not match its RECORD hash" in listed.stderr
    assert "it goes on as 1.0.0" in listed.stderr
    assert listed.stdout == "No Jump Items.\n"
    data = home / "data" / "bastion" / "console"
    assert not (data / "current.json").exists()
    assert not [p for p in (data / "builds").iterdir() if not p.name.startswith(".")]
    about = console(home, "about")
    assert about.stdout.startswith("access console 1.0.0 (build "), about.stdout


def _alter(wheel: Path) -> None:
    """One file of the wheel changed, its RECORD not: as if altered after it was built."""
    altered = wheel.with_suffix(".altered")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(altered, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "bastion/access_console/cli.py":
                data += b"\nprint('altered')\n"
            out.writestr(info, data)
    altered.replace(wheel)
