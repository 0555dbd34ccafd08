"""A held fleet against the real appliance, and the site's latency meanwhile.

Starts an appliance (supervisor, worker, `--gateways` gateway processes, SQLite) on
127.0.0.56, registers N active Jump Clients in its database and runs them with the
real agent code in `--simulators` processes (`_upgrade_clients.py`, over 8 loopback
source addresses; each process may hold at most ~20,000 open files here, so 3 for
50,000 clients), admitted by the site's own connection rate (set to its maximum,
300/s). Before the fleet connects, and again once it is all online, has settled for
`--settle` seconds and has been held for `--hold` more (heartbeats every 30 s, the
site's default), wrk
drives `/check_health` and an authenticated `GET /api/v1/accounts` (bearer token) for
`--seconds` each with `--connections` keep-alive TLS connections: an operator's
browser and scripts, not a load test. Prints:

- the ramp: how long until all were online, at what rate;
- both requests' rate, p50 and p99 without the fleet and with it held (goal: p99 under
  250 ms with the fleet held);
- the heartbeat round trips the clients measured during the hold and during the wrk
  runs (goal: p99 < 250 ms), and the simulators' own garbage-collector passes then
  (kept short as in the gateways, or as they are with `--simulators-collector-as-is`);
- the gateway processes' and the worker's resident memory, and its growth per client;
- the CPU each part used during the `--hold` seconds before the wrk runs.

    uv run python bench/bench_held_fleet.py [--clients 50000] [--gateways 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _fleet import percentile, rss_kib  # noqa: E402
from _sessions import children, command_line, cpu_seconds  # noqa: E402
from bench_api import Run, Target, drive  # noqa: E402
from bench_fleet_upgrade import SOURCES, gateway_env, register, simulator_command  # noqa: E402

from tests.integration.test_api import bearer, create_client, get_token  # noqa: E402
from tests.support.appliance import free_port, start_appliance  # noqa: E402

SITE = "held-fleet.example.test"
HOST = "127.0.0.56"
GOAL_MS = 250.0


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50_000)
    parser.add_argument("--gateways", type=int, default=3)
    parser.add_argument("--simulators", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--settle", type=float, default=30.0, help="once all are online")
    parser.add_argument("--hold", type=float, default=60.0, help="then, before the wrk runs")
    parser.add_argument("--ramp-timeout", type=float, default=900.0)
    parser.add_argument(
        "--simulators-collector-as-is", action="store_true",
        help="the simulators leave Python's garbage collector as it is (to compare)",
    )  # fmt: skip
    return parser.parse_args()


@dataclass
class Window:
    """The simulators' reports over a stretch of time: heartbeat round trips (ms
    histogram), refusals and failures, and their own garbage-collector passes."""

    trips: Counter[int] = field(default_factory=Counter)
    troubles: Counter[str] = field(default_factory=Counter)
    full_passes: int = 0
    longest_pass_ms: float = 0.0


class Simulators:
    """The simulator processes, each writing a JSON line a second to its own file."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.processes: list[subprocess.Popen[bytes]] = []
        self.outputs: list[Path] = []

    def start(self, args: argparse.Namespace, gateway: int, web: int, anchors: Path) -> None:
        share = args.clients // args.simulators
        for number in range(args.simulators):
            output = self.work / f"simulator-{number}.jsonl"
            command = simulator_command(
                SITE, HOST, gateway, anchors, (number * share, share),
                SOURCES[number :: args.simulators],
            )  # fmt: skip
            command += ["--collector-as-is"] if args.simulators_collector_as_is else []
            with output.open("wb") as sink:
                self.processes.append(subprocess.Popen(command, stdout=sink))
            self.outputs.append(output)

    def lines(self) -> list[list[dict[str, Any]]]:
        found = []
        for output in self.outputs:
            text = output.read_text()
            complete = text[: text.rfind("\n") + 1]
            found.append([json.loads(line) for line in complete.splitlines() if line])
        return found

    def online(self) -> int:
        return sum(int(lines[-1]["online"]) for lines in self.lines() if lines)

    def between(self, start: float, end: float) -> Window:
        """What the simulators' lines from `start` to `end` (wall clock) reported."""
        window = Window()
        for lines in self.lines():
            for line in lines:
                if not start <= float(line["wall"]) < end:
                    continue
                window.trips.update({int(k): v for k, v in line["round_trips_ms"].items()})
                for key, value in line.items():
                    if key.startswith(("refused_", "failed_", "lost")):
                        window.troubles[key] += int(value)
                window.full_passes += int(line.get("collector_full", 0))
                longest = float(line.get("collector_longest_ms", 0))
                window.longest_pass_ms = max(window.longest_pass_ms, longest)
        return window

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def parts(appliance_pid: int) -> dict[str, int]:
    """The worker and its gateway processes."""
    found, gateways = {}, 0
    for pid in children(appliance_pid):
        line = command_line(pid)
        if "bastion.entrypoints.gateway" in line:
            gateways += 1
            found[f"gateway {gateways}"] = pid
        elif "bastion.entrypoints.worker" in line:
            found["worker"] = pid
    return found


def measure(url: str, script: Path, args: argparse.Namespace) -> list[Run]:
    targets = [
        Target("GET /check_health", f"{url}/check_health"),
        Target("GET /api/v1/accounts", f"{url}/api/v1/accounts", script),
    ]
    return [drive(target, args.seconds, args.connections) for target in targets]


def main() -> None:
    args = arguments()
    with tempfile.TemporaryDirectory(prefix="bench-held-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        web, gateway = free_port(HOST), free_port(HOST)
        env = gateway_env(HOST, (gateway, web), args.gateways)
        appliance = stack.enter_context(
            start_appliance(work, host=HOST, port=web, env=env, extra_args=["--hostname", SITE])
        )
        token = get_token(appliance, create_client(appliance, "bench")).json()["access_token"]
        api = stack.enter_context(appliance.client(headers=bearer(token), timeout=120))
        settings = api.get("/api/v1/jump-clients/settings").json()
        settings.update(connection_rate=300)
        assert api.put("/api/v1/jump-clients/settings", json=settings).status_code == 200
        register(appliance.data_dir, args.clients)
        script = work / "bearer.lua"
        script.write_text(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
        anchors = work / "anchors.pem"
        anchors.write_bytes(appliance.ca_file.read_bytes())

        measure(appliance.url, script, argparse.Namespace(seconds=2, connections=args.connections))
        before = measure(appliance.url, script, args)
        pids = parts(appliance.process.pid)
        rss_before = {name: rss_kib(pid) for name, pid in pids.items()}

        simulators = Simulators(work)
        stack.callback(simulators.stop)
        started = time.monotonic()
        simulators.start(args, gateway, web, anchors)
        last = started
        fleet = args.clients // args.simulators * args.simulators
        while (online := simulators.online()) < fleet:
            if time.monotonic() - started > args.ramp_timeout:
                print(f"ramp stopped after {args.ramp_timeout:.0f} s at {online} clients")
                break
            if time.monotonic() - last >= 15:
                last = time.monotonic()
                print(f"  {last - started:6.0f} s: {online} online", flush=True)
            time.sleep(0.5)
        ramp = time.monotonic() - started

        time.sleep(args.settle)
        held_from, hold_started = time.time(), time.monotonic()
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        sims_cpu = sum(cpu_seconds(p.pid) for p in simulators.processes)
        time.sleep(args.hold)
        hold = time.monotonic() - hold_started
        cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / hold for name, pid in pids.items()}
        sims_cores = (sum(cpu_seconds(p.pid) for p in simulators.processes) - sims_cpu) / hold
        rss_held = {name: rss_kib(pid) for name, pid in pids.items()}
        wrk_from = time.time()
        held = measure(appliance.url, script, args)
        wrk_to = time.time()
        time.sleep(1.5)  # the simulators' last lines
        windows = {
            "during the hold": simulators.between(held_from, wrk_from),
            "during the wrk runs": simulators.between(wrk_from, wrk_to),
        }
        online_after = simulators.online()
        held_for = time.monotonic() - hold_started + args.settle

    print(f"\nclients {fleet:,}, {args.gateways} gateway processes, connection rate 300/s")
    print(f"ramp: {online} online after {ramp:.1f} s ({online / ramp:.0f}/s); "
          f"{online_after} online after {held_for:.0f} s held")  # fmt: skip
    print(f"\nwrk -t2 -c{args.connections} -d{args.seconds}s over keep-alive TLS")
    print(f"{'target':<24}{'':>10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for without, with_fleet in zip(before, held, strict=True):
        for label, run in (("no fleet", without), ("fleet held", with_fleet)):
            print(f"{run.target:<24}{label:>10}{run.rate:>9.0f}{run.p50_ms:>9.1f}"
                  f"{run.p99_ms:>9.1f}{run.errors:>8}")  # fmt: skip
    print("\nheartbeat round trips the clients measured:")
    for label, window in windows.items():
        trips = window.trips
        print(f"  {label:<20} {sum(trips.values()):>7} beats: p50 {percentile(trips, 0.5):.0f} ms,"
              f" p99 {percentile(trips, 0.99):.0f} ms, max {max(trips, default=0)} ms")  # fmt: skip
    troubles = sum((w.troubles for w in windows.values()), Counter[str]())
    print(f"  refusals/failures while held: {dict(troubles) or 'none'}")
    policy = "as it is" if args.simulators_collector_as_is else "kept short, as in the gateways"
    print(f"the simulators' own garbage-collector passes (collector {policy}):")
    for label, window in windows.items():
        print(f"  {label:<20} {window.full_passes:>4} full passes, longest pass "
              f"{window.longest_pass_ms:.0f} ms")  # fmt: skip
    worst = max(run.p99_ms for run in held)
    beats = max(percentile(w.trips, 0.99) for w in windows.values())
    print(f"goal: every p99 under {GOAL_MS:.0f} ms with the fleet held: "
          f"requests {worst:.1f} ms, heartbeats {beats:.0f} ms")  # fmt: skip
    print(f"\nmemory once all were online, and CPU over the {hold:.0f} s hold before the wrk runs:")
    print(f"{'process':<11}{'RSS MiB':>9}{'grown MiB':>10}{'KiB/client':>11}{'cores':>7}")
    for name in pids:
        grown = rss_held[name] - rss_before[name]
        print(f"{name:<11}{rss_held[name] / 1024:>9.1f}{grown / 1024:>10.1f}"
              f"{grown / max(online, 1):>11.2f}{cpu[name]:>7.2f}")  # fmt: skip
    total = sum(rss_held.values()) - sum(rss_before.values())
    print(f"{'all':<11}{'':>9}{total / 1024:>10.1f}{total / max(online, 1):>11.2f}"
          f"{sum(cpu.values()):>7.2f}")  # fmt: skip
    print(f"simulators: {sims_cores:.2f} cores during the hold; {os.cpu_count()} cores in all")


if __name__ == "__main__":
    main()
