"""Sessions: relay throughput, keystroke latency and concurrent sessions, beside OpenSSH.

Starts a real appliance (supervisor, worker, gateway) on 127.0.0.58 with a representative,
two Jump Clients installed from installers and run as their service runs, and a private
OpenSSH server (`/usr/sbin/sshd`, Debian's `openssh-server`) as this user on 127.0.0.59
with its own host key and an authorized key made here. Every shell is the user's login
shell on a PTY, and every terminal end is a PTY this script reads (output dropped):

1. Throughput: `cat` of a `--size-mib` file typed into the shell, timed from the command
   typed to a marker echoed after it: through `ssh -tt`, through a session with the
   console CLI (`bastion console jump` on a PTY: console -> appliance -> Jump Client ->
   PTY), and through a session whose console is this script on the terminal WebSocket
   (no CLI). Goal: the session with the CLI at least 0.5 x OpenSSH.
2. Keystroke latency: `--keystrokes` single bytes, each sent once the last came back, to
   `cat` in raw mode (`stty raw -echo; exec cat`: a pure byte echo, no line editing),
   on a local PTY (a login shell on a PTY of this script's), through ssh, through a
   session with the CLI and with this script on the WebSocket. Goal: p99 under 5 ms
   more than the local PTY.
3. Concurrent sessions: load sessions (each printing a 100-character line every 100 ms,
   ~1 KiB/s) on one Jump Client, driven over the WebSocket by one helper process
   (`_session_consoles.py`), stepped through `--steps`; at each step the keystroke p99 of
   one more session (on the other Jump Client, this script on the WebSocket) and the
   worker's CPU and RSS. Goal: how many sessions before the p99 passes 50 ms.

    uv run python bench/bench_sessions.py [--size-mib 1024] [--keystrokes 500]
        [--steps 10,25,50,100,200,400] [--parts throughput,latency,concurrency]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from _fleet import Process
from _session_consoles import WsConsole, round_trips
from _sessions import (
    PASSWORD,
    REPRESENTATIVE,
    CpuWatch,
    JumpClient,
    OthersWatch,
    Pty,
    WaitWatch,
    console_home,
    console_jump,
    load_average,
    percentile,
    private_sshd,
    ready_shell,
    rss_mib,
    running_site,
    start_jump_client,
    start_raw_cat,
    worker_pid,
)

from bastion.access_console.client import ConsoleClient
from tests.e2e.test_sessions_end_to_end import Site

APPLIANCE_HOST, SSH_HOST = "127.0.0.58", "127.0.0.59"
THROUGHPUT_GOAL = 0.5
ADDED_P99_GOAL_MS = 5.0
CONCURRENT_P99_LIMIT_MS = 50.0
KEY_GAP = 0.01
"""Seconds between one keystroke's echo and the next keystroke."""
KEYS_PER_BLOCK = 50
LOCAL, SSH = "local PTY (reference)", "ssh -tt"
CLI, WS = "session, console CLI", "session, WebSocket (no CLI)"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2, help="of the throughput runs")
    parser.add_argument("--keystrokes", type=int, default=500)
    parser.add_argument("--steps", default="10,25,50,100,200,400")
    parser.add_argument("--parts", default="throughput,latency,concurrency")
    return parser.parse_args()


def make_file(path: Path, mib: int) -> None:
    """`mib` MiB of 100-character text lines."""
    line = b"".join(bytes([33 + (i * 7 + j) % 94 for j in range(99)]) + b"\n" for i in range(64))
    block = line * (1024 * 1024 // len(line)) + line[: 1024 * 1024 % len(line)]
    with path.open("wb") as out:
        for _ in range(mib):
            out.write(block)


def show(label: str, value: str) -> None:
    print(f"  {label:<34} {value}", flush=True)


def cores(watch: CpuWatch) -> str:
    return ", ".join(f"{name} {used:.2f}" for name, used in watch.cores().items())


# -- 1. throughput ------------------------------------------------------------------------


def cat_through(terminal: Pty, path: Path, pids: dict[str, int]) -> tuple[float, int, str]:
    """Seconds from `cat` typed to the marker after it, bytes shown, CPU used meanwhile."""
    ready_shell(terminal)
    before = terminal.received
    watch = CpuWatch(pids)
    started = time.perf_counter()
    terminal.type(f"cat {path}; echo done-$((6*7))\r")
    terminal.expect("done-42", timeout=3600)
    seconds = time.perf_counter() - started
    return seconds, terminal.received - before, cores(watch)


async def cat_over_websocket(console: WsConsole, path: Path) -> tuple[float, int]:
    await console.ready()
    before = console.received
    started = time.perf_counter()
    await console.type(f"cat {path}; echo done-$((6*7))\r")
    await console.expect("done-42", timeout=3600)
    return time.perf_counter() - started, console.received - before


def run_cat(
    site: Site, ssh: list[str], home: Path, client: JumpClient, name: str, path: Path
) -> tuple[float, int, str]:
    """One `cat` through the target `name`: seconds, bytes shown, CPU used meanwhile."""
    worker = worker_pid(site.appliance.process.pid)
    session = {"worker": worker, "jump_client": client.process.pid}
    if name == WS:
        watch = CpuWatch(session)
        seconds, shown = asyncio.run(_over_websocket(site, client, path))
        return seconds, shown, cores(watch)
    argv = {LOCAL: ["bash", "-l"], SSH: ssh}.get(name)
    terminal = Pty(argv) if argv else console_jump(home, client.client_id)
    pids = {"terminal end": terminal.process.pid, **({} if argv else session)}
    try:
        return cat_through(terminal, path, pids)
    finally:
        terminal.close()
        if not argv:
            recorded(site)


def recorded(site: Site) -> None:
    """Wait until no session is live (its recording stored), so that the next run does
    not share the machine with syncing it."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        found = site.api.get("/api/v1/sessions").json()["sessions"]
        if not any(s["live"] for s in found):
            return
        time.sleep(0.5)


def throughput(
    site: Site, ssh: list[str], home: Path, client: JumpClient, path: Path, rounds: int
) -> None:
    size = path.stat().st_size / 2**20
    print(f"\n1. throughput: cat of {size:.0f} MiB through a PTY (load {load_average()})")
    ratios = []
    for _ in range(rounds):
        rates = {}
        for name in (LOCAL, SSH, CLI, WS):
            others = OthersWatch()
            seconds, shown, used = run_cat(site, ssh, home, client, name, path)
            rates[name] = size / seconds
            show(name, f"{seconds:6.1f} s  {size / seconds:7.1f} MiB/s  ({shown / 2**20:.0f} "
                 f"MiB shown; cores: {used}; other processes {others.cores():.2f})")  # fmt: skip
        ratios.append(rates[CLI] / rates[SSH])
        print(f"  session (CLI) / ssh: {ratios[-1]:.2f}, (no CLI) / ssh: "
              f"{rates[WS] / rates[SSH]:.2f}  (load {load_average()})")  # fmt: skip
    print(f"  median session (CLI) / ssh over {rounds} round(s): {statistics.median(ratios):.2f}; "
          f"goal >= {THROUGHPUT_GOAL}")  # fmt: skip


async def _over_websocket(site: Site, client: JumpClient, path: Path) -> tuple[float, int]:
    console = WsConsole(signed_in(site), client.client_id)
    await console.open()
    try:
        return await cat_over_websocket(console, path)
    finally:
        await console.close()
        await asyncio.to_thread(recorded, site)


def signed_in(site: Site) -> ConsoleClient:
    client = ConsoleClient(site.appliance.url, site.appliance.ca_file)
    client.sign_in(REPRESENTATIVE, PASSWORD)
    return client


# -- 2. keystroke latency -----------------------------------------------------------------


Keys = Callable[[int], Awaitable[list[float]]]
"""Time this many keystrokes, one after another, on one terminal."""


def pty_keys(terminal: Pty) -> Keys:
    ready_shell(terminal)
    start_raw_cat(terminal)

    async def keys(count: int) -> list[float]:
        found = []
        for _ in range(count):
            found.append(terminal.echo_round_trip(b"k"))
            time.sleep(KEY_GAP)
        return found

    return keys


async def ws_keys(site: Site, client: JumpClient) -> tuple[WsConsole, Keys]:
    console = WsConsole(signed_in(site), client.client_id)
    await console.open()
    await console.ready()
    await console.start_raw_cat()
    return console, lambda count: round_trips(console, count, KEY_GAP)


def figures(samples: list[float]) -> tuple[float, float, float]:
    ms = [s * 1000 for s in samples]
    return statistics.median(ms), percentile(ms, 0.99), max(ms)


async def interleaved(targets: dict[str, Keys], count: int) -> dict[str, list[float]]:
    """`count` keystrokes on each target, in blocks taken in turn (the machine's other
    load falls on all alike)."""
    samples: dict[str, list[float]] = {name: [] for name in targets}
    order = list(targets)
    for block in range(0, count, KEYS_PER_BLOCK):
        for name in order:
            samples[name] += await targets[name](min(KEYS_PER_BLOCK, count - block))
        order = order[1:] + order[:1]
    return samples


async def latency(site: Site, ssh: list[str], home: Path, client: JumpClient, count: int) -> None:
    print(f"\n2. keystroke round trip, {count} bytes to a raw `cat` (load {load_average()})")
    terminals = [Pty(["bash", "-l"]), Pty(ssh), console_jump(home, client.client_id)]
    console, over_websocket = await ws_keys(site, client)
    try:
        targets = {
            "local PTY": pty_keys(terminals[0]),
            SSH: pty_keys(terminals[1]),
            CLI: pty_keys(terminals[2]),
            WS: over_websocket,
        }
        others = OthersWatch()
        pids = {"worker": worker_pid(site.appliance.process.pid),
                "jump client": client.process.pid, "console CLI": terminals[2].process.pid,
                "this script": os.getpid()}  # fmt: skip
        waits = WaitWatch(pids)
        samples = await interleaved(targets, count)
        other_cores, waited = others.cores(), waits.ms_per_second()
    finally:
        await console.close()
        for terminal in terminals:
            terminal.close()
    results = {name: figures(found) for name, found in samples.items()}
    for name, (p50, p99, most) in results.items():
        show(name, f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {most:6.2f} ms")
    local = results["local PTY"][1]
    for name in list(results)[1:]:
        show(f"added p99, {name}", f"{results[name][1] - local:6.2f} ms")
    print(f"  goal: session p99 < {ADDED_P99_GOAL_MS:.0f} ms over the local PTY; other "
          f"processes used {other_cores:.2f} cores (load {load_average()})")  # fmt: skip
    print("  waited runnable for a CPU, ms per second: "
          + ", ".join(f"{name} {ms:.1f}" for name, ms in waited.items()))  # fmt: skip


# -- 3. concurrent sessions ---------------------------------------------------------------


def start_load(site: Site, client: JumpClient) -> Process:
    token = signed_in(site).token
    assert token is not None
    command = [
        sys.executable, str(Path(__file__).with_name("_session_consoles.py")),
        "--site", site.appliance.url, "--ca-file", str(site.appliance.ca_file),
        "--token", token, "--item", str(client.client_id),
    ]  # fmt: skip
    popen = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    load = Process("load consoles", popen)
    load.start_reading()
    return load


async def reach(load: Process, target: int) -> float:
    """Ask the load for `target` sessions; the seconds it took to open them."""
    assert load.popen.stdin is not None
    load.popen.stdin.write(f"{target}\n")
    load.popen.stdin.flush()
    while True:
        for line in load.drain():
            if "reached" in line:
                return float(line["seconds"])
        if load.popen.poll() is not None:
            raise RuntimeError("the load process ended")
        await asyncio.sleep(0.2)


async def received(load: Process) -> tuple[int, float]:
    """The bytes the load consoles received, at the time they said so (their next report)."""
    load.drain()
    while True:
        lines = load.drain()
        found = [(int(line["bytes"]), float(line["at"])) for line in lines if "bytes" in line]
        if found:
            return found[-1]
        await asyncio.sleep(0.1)


async def concurrency(
    site: Site, probe: JumpClient, loaded: JumpClient, steps: list[int], count: int
) -> None:
    print(f"\n3. concurrent sessions at ~1 KiB/s each; keystroke p99 of one more session "
          f"(load {load_average()})")  # fmt: skip
    worker = worker_pid(site.appliance.process.pid)
    load = start_load(site, loaded)
    console = WsConsole(signed_in(site), probe.client_id)
    await console.open()
    await console.ready()
    await console.start_raw_cat()
    print(f"  {'sessions':>8} {'open s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'KiB/s/s':>8} {'worker CPU':>10} {'wait':>7} {'RSS MiB':>8}  "
          "cores of the rest; load")  # fmt: skip
    try:
        for target in steps:
            opening = await reach(load, target)
            await asyncio.sleep(3.0)
            first, started = await received(load)
            watch = CpuWatch({"worker": worker, "jump clients": loaded.process.pid,
                              "load consoles": load.popen.pid, "probe": os.getpid()})  # fmt: skip
            others = OthersWatch()
            waits = WaitWatch({"worker": worker})
            samples = await round_trips(console, count, KEY_GAP)
            last, ended = await received(load)
            rate = (last - first) / (ended - started) / 1024 / target
            used = {**watch.cores(), "other processes": others.cores()}
            waited = waits.ms_per_second()["worker"]
            p50, p99, most = figures(samples)
            rest = ", ".join(f"{k} {v:.2f}" for k, v in used.items() if k != "worker")
            print(f"  {target:>8} {opening:>7.1f} {p50:>7.2f} {p99:>7.2f} {most:>7.1f} "
                  f"{rate:>8.2f} {used['worker']:>10.2f} {waited:>7.0f} {rss_mib(worker):>8.0f}  "
                  f"{rest}; {load_average()}", flush=True)  # fmt: skip
            if p99 > CONCURRENT_P99_LIMIT_MS:
                print(f"  p99 passed {CONCURRENT_P99_LIMIT_MS:.0f} ms at {target} sessions")
                break
    finally:
        await console.close()
        load.stop()


def main() -> None:
    args = arguments()
    parts = set(args.parts.split(","))
    print(f"load before: {load_average()} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        big = tmp / "big.txt"
        make_file(big, args.size_mib)
        with running_site(tmp, APPLIANCE_HOST) as site, private_sshd(tmp / "ssh", SSH_HOST) as ssh:
            probe = start_jump_client(site, "jump-client-1")
            loaded = start_jump_client(site, "jump-client-2") if "concurrency" in parts else None
            try:
                home = console_home(site)
                if "throughput" in parts:
                    throughput(site, ssh, home, probe, big, args.rounds)
                if "latency" in parts:
                    asyncio.run(latency(site, ssh, home, probe, args.keystrokes))
                if loaded is not None:
                    steps = [int(n) for n in args.steps.split(",")]
                    asyncio.run(concurrency(site, probe, loaded, steps, args.keystrokes))
            finally:
                for client in (probe, loaded):
                    if client is not None:
                        client.stop()
    print(f"\nload after: {load_average()}")


if __name__ == "__main__":
    main()
