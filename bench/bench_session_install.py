"""A remote session across a site install: does it survive, and how long is it silent?

    uv run python bench/bench_session_install.py [--keep 600] [--interval 0.02]

Real processes: an appliance, a Jump Client and the access console on a PTY. The session
runs a loop on the endpoint that prints a line every `--interval` seconds; a site release
(this source as 1.1.0) is installed while it runs. Printed for each way: whether the
session outlived the install, the longest time the console saw no output from the start
of the install until 5 s after it ended, the install's duration, and how long the old
worker took to end once the session did (its console exited). Compared in the same run with
`BASTION_INSTALL_SESSION_KEEP_SECONDS=0`: sessions end at the switch, as before (and as
the commercial appliances do at every upgrade).
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bastion.supervisor.client import SupervisorClient  # noqa: E402
from bench._sessions import children, command_line  # noqa: E402
from tests.e2e.test_sessions_end_to_end import Terminal  # noqa: E402
from tests.support.installs import request_install, store_release, wait_idle  # noqa: E402
from tests.support.releases import project_wheel  # noqa: E402
from tests.support.sessions import (  # noqa: E402
    clients,
    online_endpoint,
    representative,
    session_site,
    signed_in_console,
)

SITE = "kept.bench.test"
HOST = "127.0.0.213"
WORKER = "bastion.entrypoints.worker serve"


def workers(appliance_pid: int) -> set[int]:
    """The appliance's worker processes (the supervisor's children serving the site)."""
    return {pid for pid in children(appliance_pid) if WORKER in command_line(pid)}


def read_gaps(terminal: Terminal, until: float, gaps: list[float], last: list[float]) -> None:
    while time.monotonic() < until:
        ready, _, _ = select.select([terminal.master], [], [], 0.05)
        if not ready:
            continue
        try:
            chunk = os.read(terminal.master, 65536)
        except OSError:
            return
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now
        terminal.shown += chunk


def one_way(keep: float, interval: float, wheel: Path, tmp: Path) -> dict[str, object]:
    tmp.mkdir(parents=True)
    env = {"BASTION_INSTALL_PROBATION_SECONDS": "5"}
    env["BASTION_INSTALL_SESSION_KEEP_SECONDS"] = str(keep)
    with session_site(tmp, HOST, SITE, env) as site, online_endpoint(site):
        representative(site, "rep", ["Servers"])
        home = signed_in_console(site, "rep")
        terminal = Terminal(home, "jump", clients(site)[0]["name"])
        try:
            terminal.type("echo ready\r")
            terminal.expect("ready")
            terminal.type(f"while :; do date +%s.%N; sleep {interval}; done\r")
            time.sleep(2)
            data, pid = site.appliance.data_dir, site.appliance.process.pid
            before = workers(pid)
            done = len(wait_idle(data)["history"])
            gaps: list[float] = []
            last = [time.monotonic()]
            started = time.monotonic()
            request_install(data, store_release(data, "site", "1.1.0", wheel, site=SITE))
            while time.monotonic() - started < 300 and _installs(data) <= done:
                read_gaps(terminal, time.monotonic() + 0.2, gaps, last)
            installed = time.monotonic() - started
            read_gaps(terminal, time.monotonic() + 5, gaps, last)
            survived = terminal.process.poll() is None and b"The session ended" not in (
                terminal.shown
            )
            longest = max(gaps) if gaps else float("nan")
            terminal.type("\x03")
            terminal.type("exit\r")
            typed = time.monotonic()
            terminal.exit_code(timeout=60)
            ended_at = time.monotonic()
            console_exit = ended_at - typed
            old_gone = float("nan")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if not (before & workers(pid)):
                    old_gone = time.monotonic() - ended_at
                    break
                time.sleep(0.05)
        finally:
            terminal.close()
    return {
        "survived": survived,
        "longest_silence_s": round(longest, 3) if survived else "- (ended)",
        "install_s": round(installed, 1),
        "console_exited_after_exit_s": round(console_exit, 2) if survived else "-",
        "old_worker_ended_after_console_s": round(old_gone, 2) if survived else "-",
    }


def _installs(data: Path) -> int:
    """Installs finished so far (0 while the supervisor cannot answer)."""
    try:
        status = SupervisorClient(data).status().to_wire()
    except Exception:  # the supervisor is busy switching: ask again
        return 0
    return len(status["history"]) if status["state"] == "idle" else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=float, default=600.0)
    parser.add_argument("--interval", type=float, default=0.02)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-session-install-") as root:
        wheel = project_wheel("1.1.0", Path(root) / "wheels")
        kept = one_way(args.keep, args.interval, wheel, Path(root) / "kept")
        ended = one_way(0, args.interval, wheel, Path(root) / "ended")
    print(f"a line every {args.interval * 1000:.0f} ms on the endpoint; site 1.1.0 installed")
    print(f"{'':44} {'kept (Bastion)':>16} {'ended at switch':>16}")
    for key in kept:
        print(f"{key:44} {kept[key]!s:>16} {ended[key]!s:>16}")


if __name__ == "__main__":
    main()
