"""A session end to end, all real processes: an appliance (supervisor, worker, gateway), a
Jump Client installed from an installer made through the API and run as its service
runs, and the access console (`bastion console …`) on a real terminal (a PTY).

A representative granted the client's Jump Group signs in, lists it, jumps to it and gets
a shell on the endpoint: a command's output, `stty size` after the console's terminal
is resized, Ctrl-C, and the shell's exit code as the console's own. The session report
names them both, and its recording plays back with `asciinema` holding what was typed
and shown. A representative without the group sees nothing to jump to and is refused.
An administrator's console lists the sessions in progress and watches one as it goes.
A Jump Client run with `--no-sessions` refuses a jump at once, and the console says why.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.endpoints import Client, eventually
from tests.support.sessions import (
    Site,
    clients,
    console,
    console_env,
    online_endpoint,
    representative,
    session_site,
    signed_in_console,
    start_watch,
)

SITE = "sessions.example.test"
HOST = "127.0.0.111"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with session_site(tmp_path_factory.mktemp("sessions"), HOST, SITE) as running:
        yield running


@pytest.fixture(scope="module")
def endpoint(site: Site) -> Iterator[Client]:
    with online_endpoint(site) as client:
        yield client


class Terminal:
    """`bastion console jump …` on a PTY of its own, as a representative's terminal runs it."""

    def __init__(self, home: Path, *args: str, cols: int = 80, rows: int = 24) -> None:
        self.master, slave = os.openpty()
        self.resize(cols, rows)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bastion", "console", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=console_env(home),
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.shown = b""

    def resize(self, cols: int, rows: int) -> None:
        """What a terminal window does when it is resized (the console gets SIGWINCH)."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def expect(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.shown:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not shown in {timeout} s; shown: {self.shown!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.shown += os.read(self.master, 65536)
                except OSError:  # the console ended: nothing more will be shown
                    raise AssertionError(f"{text!r} never shown: {self.shown!r}") from None

    def exit_code(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.shown += os.read(self.master, 65536)
                except OSError:
                    break
        return self.process.wait(timeout=max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


def test_a_representative_reaches_the_endpoints_shell_and_the_session_is_recorded(
    site: Site, endpoint: Client, tmp_path: Path
) -> None:
    representative(site, "rep", ["Servers"])
    home = signed_in_console(site, "rep")
    listed = console(home, "list")
    assert listed.returncode == 0 and "Servers" in listed.stdout and "yes" in listed.stdout
    about = console(home, "about")
    assert about.returncode == 0 and f"site {SITE}" in about.stdout, about.stdout + about.stderr
    name = clients(site)[0]["name"]

    terminal = Terminal(home, "jump", name, cols=80, rows=24)
    try:
        terminal.type("echo hello-$((6*7))\r")
        terminal.expect("hello-42")
        terminal.resize(101, 33)
        time.sleep(0.5)  # the resize travels console -> site -> Jump Client -> its PTY
        terminal.type("stty size\r")
        terminal.expect("33 101")
        terminal.type("sleep 100\r")
        time.sleep(0.5)
        terminal.type("\x03")  # Ctrl-C reaches the remote foreground job, not the console
        terminal.type("echo after-$((1+1))\r")
        terminal.expect("after-2")
        terminal.type("exit 7\r")
        assert terminal.exit_code() == 7, terminal.shown
    finally:
        terminal.close()

    def ended() -> list[dict[str, Any]]:
        found = site.api.get("/api/v1/sessions", params={"username": "rep"}).json()
        return [s for s in found["sessions"] if not s["live"] and s["recording_sha256"]]

    eventually(lambda: bool(ended()), timeout=30, what="the session's record with its recording")
    (report,) = ended()
    assert report["username"] == "rep" and report["jump_client_name"] == name
    assert report["duration_seconds"] > 0 and report["bytes_from_endpoint"] > 0
    assert report["bytes_from_console"] > 0 and "7" in report["end_reason"]
    recording = site.api.get(f"/api/v1/sessions/{report['id']}/recording")
    assert recording.status_code == 200, recording.text
    cast = tmp_path / "session.cast"
    cast.write_bytes(recording.content)
    played = subprocess.run(
        [str(Path(sys.executable).with_name("asciinema")), "cat", str(cast)],
        capture_output=True,
        timeout=30,
    )
    assert played.returncode == 0, played.stderr
    shown = played.stdout.decode(errors="replace")
    assert "hello-42" in shown and "33 101" in shown and "after-2" in shown
    assert "Traceback" not in site.appliance.log()


def test_a_representative_without_the_group_sees_nothing_and_is_refused(
    site: Site, endpoint: Client
) -> None:
    representative(site, "outsider", ["Laptops"])
    home = signed_in_console(site, "outsider")
    listed = console(home, "list")
    assert listed.returncode == 0 and "No Jump Items" in listed.stdout, listed.stdout
    row_id = str(clients(site)[0]["id"])
    refused = console(home, "jump", row_id)
    assert refused.returncode != 0
    assert "Jump Item" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr


def test_an_administrator_watches_a_session_from_the_console(site: Site, endpoint: Client) -> None:
    representative(site, "watched", ["Servers"])
    representative(site, "supervisor", [], role="administrator")
    rep, boss = signed_in_console(site, "watched"), signed_in_console(site, "supervisor")
    terminal = Terminal(rep, "jump", clients(site)[0]["name"])
    watcher: subprocess.Popen[str] | None = None
    try:
        terminal.type("echo before-$((2*3))\r")
        terminal.expect("before-6")
        listed = console(boss, "watch")
        assert listed.returncode == 0 and "watched" in listed.stdout, listed.stdout
        session_id = next(
            s["id"]
            for s in site.api.get("/api/v1/sessions", params={"username": "watched"}).json()[
                "sessions"
            ]
            if s["live"]
        )
        watcher = start_watch(boss, session_id)
        time.sleep(2)  # the watcher joins; what the screen showed is sent to it first
        terminal.type("echo during-$((6*7))\r")
        terminal.expect("during-42")
        terminal.type("exit 0\r")
        assert terminal.exit_code() == 0, terminal.shown
        shown, said = watcher.communicate(timeout=30)
    finally:
        terminal.close()
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, said
    assert "before-6" in shown and "during-42" in shown, shown
    assert "Watching watched on" in said and "The session ended" in said, said
    refused = console(rep, "watch")
    assert refused.returncode != 0 and "administrators" in refused.stdout + refused.stderr


def test_a_jump_client_with_sessions_off_refuses_at_once_and_says_why(site: Site) -> None:
    """Its refusal reaches a gateway process; the session's record carries it to the
    serving worker, which ends the session long before the 30 s join deadline."""
    with online_endpoint(site, "Kiosks", "jump_client", "--no-sessions"):
        representative(site, "kiosk-rep", ["Kiosks"])
        home = signed_in_console(site, "kiosk-rep")
        (kiosk,) = [c for c in clients(site) if c["jump_group"] == "Kiosks"]
        started = time.monotonic()
        terminal = Terminal(home, "jump", kiosk["name"])
        try:
            code = terminal.exit_code(timeout=30)
        finally:
            terminal.close()
        took = time.monotonic() - started
    shown = terminal.shown.decode(errors="replace")
    assert code != 0 and took < 10, (took, shown)
    assert "sessions turned off" in shown and "--no-sessions" in shown, shown
    assert "did not answer" not in shown and "Traceback" not in shown, shown
    found = site.api.get("/api/v1/sessions", params={"username": "kiosk-rep"}).json()
    (record,) = found["sessions"]
    assert not record["live"] and "sessions turned off" in record["end_reason"], record
