"""Remote sessions survive a site install, all real processes: an appliance, a Jump Client
and two access consoles on real terminals (PTYs).

Three sessions are open when site 1.1.0 is installed, and a fourth was opened whose
console joins only after the switch: the new version relays it to the old worker, and it
runs there. The old worker stops accepting at the switch, but keeps the sessions'
connections: a command typed after the install still
reaches the endpoint and its output comes back, and that session ends as usual (its
shell's exit code). An administrator ends another through the new version's API. The
third is left open: an administrator's console lists the three and watches it through
the new version (which relays the watch from the old worker), and the old worker ends
it once the site's cap (`BASTION_INSTALL_SESSION_KEEP_SECONDS`) passes, with that
reason, and then exits. The
Jump Client defers its own upgrade until its sessions end, then upgrades, and a new
session (the representative signs in again: an install signs everyone out) goes to the
new version.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.access_console.client import ConsoleClient
from bastion.access_console.protocol import Exited, Started, read_from_site
from bastion.access_console.terminal import open_terminal
from tests.e2e.test_sessions_end_to_end import Terminal
from tests.support import web
from tests.support.endpoints import Client, eventually
from tests.support.installs import request_install, store_release, wait_idle
from tests.support.releases import project_wheel
from tests.support.sessions import (
    PASSWORD,
    Site,
    clients,
    console,
    online_endpoint,
    representative,
    session_site,
    signed_in_console,
    start_watch,
)

SITE = "kept.example.test"
HOST = "127.0.0.212"
KEEP = 30


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    env = {
        "BASTION_INSTALL_PROBATION_SECONDS": "1",
        "BASTION_INSTALL_SESSION_KEEP_SECONDS": str(KEEP),
    }
    with session_site(tmp_path_factory.mktemp("kept"), HOST, SITE, env) as running:
        yield running


@pytest.fixture(scope="module")
def endpoint(site: Site) -> Iterator[Client]:
    with online_endpoint(site) as client:
        yield client


def sessions(site: Site) -> list[dict[str, Any]]:
    found = site.api.get("/api/v1/sessions", params={"username": "rep"}).json()
    return list(found["sessions"])


def kept(site: Site) -> list[dict[str, Any]]:
    workers = site.api.get("/api/v1/updates/install").json()["workers"]
    return [w for role, w in workers.items() if role.startswith("retiring ")]


def shown_kept(site: Site, sessions: int) -> None:
    """What an administrator is told: the API, the console and the Updates page."""
    (old,) = kept(site)
    data = str(site.appliance.data_dir)
    assert (old["slot"], old["sessions"]) == ("site-1.0.0", sessions), old
    status = subprocess.run(
        [sys.executable, "-m", "bastion", "appliance", "install-status", "--data", data],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert f"keeps {sessions} remote session(s)" in status.stdout, status.stdout + status.stderr
    with site.appliance.client() as browser:
        web.sign_in(browser, "admin", "password")
        changed = web.change_password(browser, "password", "a long pass phrase for updates")
        assert changed.status_code == 303, changed.text
        page = browser.get("/appliance/updates")
        assert f'id="kept-sessions-{old["pid"]}"' in page.text
        assert f"keeps {sessions} remote session(s)" in page.text


async def join_late(url: str, tls: ssl.SSLContext, token: str) -> int | None:
    """The console of a session opened before the switch joins after it: it starts, a
    command's output comes back, and the shell's exit code is the session's end."""
    async with await open_terminal(url, tls, token) as ws:
        first = await asyncio.wait_for(ws.recv(), 30)
        assert isinstance(first, str) and isinstance(read_from_site(first), Started), first
        await ws.send(b"echo late-$((5*5))\r")
        shown = b""
        while b"late-25" not in shown:
            frame = await asyncio.wait_for(ws.recv(), 30)
            assert isinstance(frame, bytes), frame
            shown += frame
        await ws.send(b"exit 5\r")
        while isinstance(frame := await asyncio.wait_for(ws.recv(), 30), bytes):
            pass
        said = read_from_site(frame)
        return said.code if isinstance(said, Exited) else None


def test_sessions_in_progress_survive_a_site_install(
    site: Site, endpoint: Client, tmp_path: Path
) -> None:
    representative(site, "rep", ["Servers"])
    home = signed_in_console(site, "rep")
    name = clients(site)[0]["name"]
    opened: list[str] = []

    def jump(command: str, shown: str) -> Terminal:
        terminal = Terminal(home, "jump", name)
        terminal.type(command)
        terminal.expect(shown)
        (new,) = {s["id"] for s in sessions(site) if s["live"]} - set(opened)
        opened.append(new)
        return terminal

    working = jump("echo before-$((20+1))\r", "before-21")
    idle = jump("echo idle-$((1+1))\r", "idle-2")
    stopped = jump("echo to-end-$((2+2))\r", "to-end-4")
    late = ConsoleClient(
        f"https://{site.appliance.host}:{site.appliance.port}", site.appliance.ca_file
    )
    late.sign_in("rep", PASSWORD)
    (item,) = [i.id for i in late.jump_items() if i.name == name]
    unjoined = late.open_session(item)  # the Jump Client joins now, the console after
    opened.append(unjoined.session_id)
    watcher: subprocess.Popen[str] | None = None
    try:
        data = site.appliance.data_dir
        wheel = project_wheel("1.1.0", tmp_path / "wheels")
        request_install(data, store_release(data, "site", "1.1.0", wheel, site=SITE))
        last = wait_idle(data, timeout=240)["history"][-1]
        assert last["outcome"] == "installed", last
        switched = time.monotonic()
        assert site.api.get("/check_health").json()["version"] == "1.1.0"
        shown_kept(site, 4)
        url = late.terminal_url(unjoined)
        assert asyncio.run(join_late(url, late.tls, unjoined.token)) == 5

        representative(site, "supervisor", [], role="administrator")
        boss = signed_in_console(site, "supervisor")
        listed = console(boss, "watch", columns=300)
        assert all(s in listed.stdout for s in opened[:3]), listed.stdout + listed.stderr
        watcher = start_watch(boss, opened[1])
        time.sleep(2)  # the watcher joins; what the screen showed is sent to it first
        idle.type("echo watched-$((3+4))\r")
        idle.expect("watched-7")

        working.type("echo after-install-$((2*3))\r")
        working.expect("after-install-6")
        working.type("exit 3\r")
        assert working.exit_code() == 3, working.shown
        assert "keeps 4 session(s)" in site.appliance.log()

        # the new version's API ends a session the old worker keeps (via the supervisor)
        answer = site.api.post(f"/api/v1/sessions/{opened[2]}/end")
        assert answer.status_code == 200, answer.text
        assert not answer.json()["live"] and answer.json()["end_reason"] == "ended by api:setup"
        stopped.expect("The session ended")
        stopped.expect("ended by api:setup")
        assert stopped.exit_code() != 0

        idle.expect("The session ended", timeout=KEEP + 30)
        idle.expect("kept on the previous version")
        assert time.monotonic() - switched < KEEP + 15
        shown, said = watcher.communicate(timeout=30)
    finally:
        for terminal in (working, idle, stopped):
            terminal.close()
        late.close()
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, said
    assert "idle-2" in shown and "watched-7" in shown, shown
    assert "Watching rep on" in said and "kept on the previous version" in said, said

    def ended() -> list[dict[str, Any]]:
        return [s for s in sessions(site) if not s["live"] and s["recording_sha256"]]

    eventually(lambda: len(ended()) == 4, timeout=30, what="the four sessions recorded")
    reasons = {s["id"]: s["end_reason"] for s in ended()}
    assert reasons[opened[3]] == "the remote shell exited with code 5", reasons
    assert reasons[opened[0]] == "the remote shell exited with code 3", reasons
    assert "kept on the previous version" in reasons[opened[1]], reasons
    assert reasons[opened[2]] == "ended by api:setup", reasons
    log = site.appliance.log()
    assert "did not end" not in log and "Traceback" not in log
    eventually(lambda: not kept(site), timeout=30, what="the old worker gone from the status")

    eventually(
        lambda: clients(site)[0]["version"] == "1.1.0" and clients(site)[0]["online"],
        timeout=120,
        what="the Jump Client upgraded once its sessions ended",
    )
    url = f"https://{site.appliance.host}:{site.appliance.port}"
    again = console(
        home, "sign-in", "--site", url, "--ca-file", str(site.appliance.ca_file),
        "--username", "rep", "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr  # the install signed all out
    fresh = Terminal(home, "jump", name)
    try:
        fresh.type("echo new-version-$((3*3))\r")
        fresh.expect("new-version-9", timeout=60)
        fresh.type("exit\r")
        assert fresh.exit_code() == 0
    finally:
        fresh.close()
