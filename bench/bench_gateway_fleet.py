"""A held fleet of active Jump Clients: ramp, heartbeat round trips, memory per client.

Starts `--gateways` gateway processes on listening sockets this script owns (as the
supervisor does), shared or as an SO_REUSEPORT group (`--sharing`), and `--simulators`
simulator processes running the real agent code, spread over `--sources` loopback
source addresses. The clients start at `--start-rate` per second in total; the gateways
admit `--rate` per second in total. Once all are online the fleet is held for `--hold`
seconds, then it prints:

- the time to ramp, and what the gateways refused on the way;
- heartbeat round trips (p50, p99) measured by the clients during the hold;
- per gateway process: connections, resident memory and its growth per client;
- CPU used by gateways and simulators during the hold.

    uv run python bench/bench_gateway_fleet.py [--clients 50000] [--sharing reuseport]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _fleet import (
    Fleet,
    OtherLoad,
    Pki,
    Process,
    cpu_seconds,
    percentile,
    rss_kib,
    split,
    wait_ready,
)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50_000)
    parser.add_argument("--gateways", type=int, default=4)
    parser.add_argument("--simulators", type=int, default=4)
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--sharing", choices=["shared", "reuseport"], default="reuseport")
    parser.add_argument("--rate-sharing", choices=["file", "split"], default="file")
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--start-rate", type=float, default=280.0)
    parser.add_argument("--heartbeat", type=float, default=30.0)
    parser.add_argument("--hold", type=float, default=90.0)
    parser.add_argument("--ramp-timeout", type=float, default=900.0)
    return parser.parse_args()


class Tally:
    """The latest status of each gateway and what the simulators reported."""

    def __init__(self) -> None:
        self.gateways: dict[str, dict[str, Any]] = {}
        self.refusals: Counter[str] = Counter()
        self.round_trips: Counter[int] = Counter()
        self.sim_online: dict[str, int] = {}

    def read(self, gateways: list[Process], simulators: list[Process], keep_rtt: bool) -> None:
        for process in gateways:
            for line in process.drain():
                if "online" in line:
                    self.gateways[process.name] = line
        for process in simulators:
            for line in process.drain():
                self.sim_online[process.name] = int(line["online"])
                for key, value in line.items():
                    if key.startswith(("refused_", "failed_")):
                        self.refusals[key] += int(value)
                if keep_rtt:
                    self.round_trips.update({int(k): v for k, v in line["round_trips_ms"].items()})

    def online(self) -> int:
        return sum(int(status["online"]) for status in self.gateways.values())


def ramp(
    args: argparse.Namespace, tally: Tally, gateways: list[Process], sims: list[Process]
) -> float:
    started = time.monotonic()
    last_print = started
    while tally.online() < args.clients:
        if time.monotonic() - started > args.ramp_timeout:
            print(f"ramp stopped after {args.ramp_timeout:.0f} s at {tally.online()} clients")
            break
        time.sleep(0.5)
        tally.read(gateways, sims, keep_rtt=False)
        if time.monotonic() - last_print >= 15:
            last_print = time.monotonic()
            print(f"  {last_print - started:6.0f} s: {tally.online()} online", flush=True)
    return time.monotonic() - started


def report(args: argparse.Namespace, tally: Tally, baseline: dict[str, int], ramp_s: float) -> None:
    print(
        f"\nclients {args.clients}, gateways {args.gateways} ({args.sharing}), "
        f"simulators {args.simulators}, rate {args.rate:g}/s, heartbeat {args.heartbeat:g} s"
    )
    print(
        f"ramp: {tally.online()} online after {ramp_s:.1f} s "
        f"({tally.online() / ramp_s:.0f}/s); client-side refusals/failures: "
        f"{dict(tally.refusals) or 'none'}"
    )
    samples = sum(tally.round_trips.values())
    print(
        f"heartbeat round trip over {samples} beats: p50 {percentile(tally.round_trips, 0.5):.0f}"
        f" ms, p99 {percentile(tally.round_trips, 0.99):.0f} ms, "
        f"max {max(tally.round_trips, default=0)} ms"
    )
    print(f"{'process':<11}{'conns':>8}{'RSS MiB':>9}{'grown MiB':>10}{'KiB/client':>11}")
    total_grown, total_conns = 0, 0
    for name, status in sorted(tally.gateways.items()):
        grown = status["rss_kib"] - baseline[name]
        conns = int(status["links"])
        total_grown, total_conns = total_grown + grown, total_conns + conns
        per = grown / conns if conns else 0.0
        print(
            f"{name:<11}{conns:>8}{status['rss_kib'] / 1024:>9.1f}{grown / 1024:>10.1f}{per:>11.1f}"
        )
    print(f"{'all':<11}{total_conns:>8}{'':>9}{total_grown / 1024:>10.1f}"
          f"{total_grown / max(total_conns, 1):>11.1f}")  # fmt: skip


def _cores(cpu: dict[str, float], prefix: str, seconds: float) -> float:
    return sum(v for k, v in cpu.items() if k.startswith(prefix)) / seconds


def print_ramp_cpu(cpu: dict[str, float], seconds: float, clients: int) -> None:
    gateways, simulators = _cores(cpu, "gateway", seconds), _cores(cpu, "simulator", seconds)
    per_client = sum(cpu.values()) * 1000 / clients
    print(f"CPU during the ramp: gateways {gateways:.2f} cores, simulators {simulators:.2f} "
          f"cores; {per_client:.1f} ms of CPU per client admitted (both ends)")  # fmt: skip


def main() -> None:
    args = arguments()
    with tempfile.TemporaryDirectory() as scratch:
        fleet = Fleet(Pki(Path(scratch)), "bench", args.clients, args.gateways, args.rate,
                      args.heartbeat, args.sharing, args.rate_sharing)  # fmt: skip
        fleet.listen()
        gateways = [fleet.start_gateway(i) for i in range(args.gateways)]
        sims: list[Process] = []
        try:
            baseline = wait_ready(gateways)
            sources = [f"127.0.1.{n + 1}" for n in range(args.sources)]
            per_sim = args.start_rate / args.simulators
            for number, (first, count) in enumerate(split(args.clients, args.simulators)):
                own = sources[number :: args.simulators] or sources
                sims.append(fleet.start_simulator(first, count, own, per_sim))
            tally = Tally()
            ramp_cpu = {p.name: cpu_seconds(p.popen.pid) for p in gateways + sims}
            ours = [os.getpid(), *(p.popen.pid for p in gateways + sims)]
            other = OtherLoad(ours)
            ramp_s = ramp(args, tally, gateways, sims)
            other_ramp = other.cores()
            ramp_cpu = {
                p.name: cpu_seconds(p.popen.pid) - ramp_cpu[p.name] for p in gateways + sims
            }
            cpu_before = {p.name: cpu_seconds(p.popen.pid) for p in gateways + sims}
            tally.round_trips.clear()
            other = OtherLoad(ours)
            hold_end = time.monotonic() + args.hold
            while time.monotonic() < hold_end:
                time.sleep(1.0)
                tally.read(gateways, sims, keep_rtt=True)
            other_hold = other.cores()
            report(args, tally, baseline, ramp_s)
            print_ramp_cpu(ramp_cpu, ramp_s, args.clients)
            print(f"other processes on the machine: {other_ramp:.2f} cores during the ramp, "
                  f"{other_hold:.2f} during the hold (of {os.cpu_count()})")  # fmt: skip
            cpu = {p.name: cpu_seconds(p.popen.pid) - cpu_before[p.name] for p in gateways + sims}
            gw_cpu = sum(v for k, v in cpu.items() if k.startswith("gateway"))
            sim_cpu = sum(v for k, v in cpu.items() if k.startswith("simulator"))
            print(f"CPU during the hold: gateways {gw_cpu / args.hold:.2f} cores, "
                  f"simulators {sim_cpu / args.hold:.2f} cores")  # fmt: skip
            sim_rss = sum(rss_kib(p.popen.pid) for p in sims) / 1024
            print(f"simulator RSS: {sim_rss:.0f} MiB for {args.clients} clients")
        finally:
            for process in sims + gateways:
                process.stop()


if __name__ == "__main__":
    main()
