"""A site for sessions end to end: an appliance with its gateway, reachable by its Jump
Clients at its public URL, an API client, a Jump Client online in a Jump Group, and
representatives who sign in with the access console (`bastion console …`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.integration.test_api import bearer, create_client, get_token
from tests.support import web
from tests.support.appliance import RunningAppliance, free_port, start_appliance
from tests.support.endpoints import Client, eventually, install_and_run

PASSWORD = "a long pass phrase 1"


@dataclass
class Site:
    appliance: RunningAppliance
    api: httpx.Client
    tmp: Path


@contextmanager
def session_site(
    tmp: Path, host: str, hostname: str, extra_env: dict[str, str] | None = None
) -> Iterator[Site]:
    """An appliance on `host` named `hostname`, with its gateway on `host` too."""
    web_port, gateway = free_port(host), free_port(host)
    env = {
        "BASTION_GATEWAY_LISTEN": f"{host}:{gateway}",
        "BASTION_GATEWAY_ADDRESS": f"{host}:{gateway}",
        "BASTION_PUBLIC_URL": f"https://{host}:{web_port}",
        **(extra_env or {}),
    }
    args = ["--hostname", hostname]
    with start_appliance(tmp, host=host, port=web_port, env=env, extra_args=args) as appliance:
        token = get_token(appliance, create_client(appliance, "setup")).json()["access_token"]
        with appliance.client(headers=bearer(token), timeout=60) as api:
            yield Site(appliance, api, tmp)


@contextmanager
def online_endpoint(
    site: Site, group: str = "Servers", kind: str = "jump_client", *options: str
) -> Iterator[Client]:
    """A Jump Client (or, `kind` "jumpoint", a Jumpoint) installed from an installer for
    `group`, running (`run` with `options`) until the end."""
    answer = site.api.post(
        "/api/v1/jump-clients/installers",
        json={"mode": "active", "jump_group": group, "kind": kind},
    )
    assert answer.status_code == 201, answer.text
    made = site.tmp / f"installer-{answer.json()['id']}.json"
    made.write_text(answer.json()["installer"])
    state = site.tmp / f"endpoint-{answer.json()['id']}"
    command = kind.replace("_", "-")
    client = install_and_run(made, state, state.with_suffix(".log"), command, *options)
    online = [c for c in clients(site) if c["status"] == "online" and c["kind"] == kind]
    try:
        eventually(
            lambda: (
                len([c for c in clients(site) if c["status"] == "online" and c["kind"] == kind])
                > len(online)
            ),
            what="online",
        )
        yield client
    finally:
        client.stop()


def clients(site: Site) -> list[dict[str, Any]]:
    return list(site.api.get("/api/v1/jump-clients").json()["clients"])


def representative(
    site: Site, username: str, groups: list[str], role: str = "representative"
) -> None:
    """An account that chose its password in the browser, granted `groups`."""
    made = site.api.post(
        "/api/v1/accounts",
        json={"username": username, "password": "first " + PASSWORD, "role": role},
    )
    assert made.status_code == 201, made.text
    granted = site.api.put(
        f"/api/v1/accounts/{made.json()['id']}/jump-groups", json={"jump_groups": groups}
    )
    assert granted.status_code == 200, granted.text
    with site.appliance.client() as browser:
        web.sign_in(browser, username, "first " + PASSWORD)
        changed = web.change_password(browser, "first " + PASSWORD, PASSWORD)
        assert changed.status_code in (200, 303), changed.text


def console_env(home: Path) -> dict[str, str]:
    """The console's settings and the builds it upgrades itself to stay under `home`."""
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "PYTHONUNBUFFERED": "1",
    }


def console(
    home: Path, *args: str, stdin: str = "", columns: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`bastion console ARGS…` run to its end; `columns`: the width its tables get."""
    wide = {} if columns is None else {"COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-m", "bastion", "console", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**console_env(home), **wide},
    )


def start_watch(home: Path, session_id: str) -> subprocess.Popen[str]:
    """`bastion console watch SESSION_ID`, left running: read it with `communicate()`."""
    return subprocess.Popen(
        [sys.executable, "-m", "bastion", "console", "watch", session_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=console_env(home),
    )


def signed_in_console(site: Site, username: str) -> Path:
    home = site.tmp / f"console-{username}"
    home.mkdir()
    url = f"https://{site.appliance.host}:{site.appliance.port}"
    ca = str(site.appliance.ca_file)
    done = console(
        home, "sign-in", "--site", url, "--ca-file", ca, "--username", username,
        "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return home
