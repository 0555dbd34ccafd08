"""A fleet coming back after its gateway processes are killed and restarted.

Brings `--clients` active Jump Clients online across `--gateways` processes, waits one
heartbeat interval (so every client holds a current reconnect window), kills every
gateway process (SIGKILL by default: a crash, nobody says goodbye) and starts new ones
on the same listening sockets, which this script holds as the supervisor does. Prints
the time until all clients are back against N/rate (goal: at most 1.1 x N/rate) and the
most clients admitted in any one-second window (goal: at most rate x (1 + burst)).

    uv run python bench/bench_gateway_reconnect.py [--clients 10000] [--rate 300]
"""

from __future__ import annotations

import argparse
import bisect
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

from _fleet import Fleet, OtherLoad, Pki, Process, split, wait_ready


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--simulators", type=int, default=2)
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--sharing", choices=["shared", "reuseport"], default="reuseport")
    parser.add_argument("--rate-sharing", choices=["file", "split"], default="file")
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--heartbeat", type=float, default=10.0)
    parser.add_argument("--signal", choices=["kill", "term"], default="kill")
    parser.add_argument("--timeout", type=float, default=900.0)
    return parser.parse_args()


def online(statuses: dict[str, dict[str, object]]) -> int:
    return sum(int(str(status["online"])) for status in statuses.values())


def follow(
    gateways: list[Process], statuses: dict[str, dict[str, object]], arrivals: list[float]
) -> None:
    for process in gateways:
        for line in process.drain():
            if "online" in line:
                statuses[process.name] = line
                arrivals.extend(line["arrivals"])


def wait_all_online(args: argparse.Namespace, gateways: list[Process]) -> list[float]:
    statuses: dict[str, dict[str, object]] = {}
    arrivals: list[float] = []
    deadline = time.monotonic() + args.timeout
    while online(statuses) < args.clients and time.monotonic() < deadline:
        time.sleep(0.2)
        follow(gateways, statuses, arrivals)
    if online(statuses) < args.clients:
        raise SystemExit(f"only {online(statuses)} of {args.clients} came online")
    return arrivals


def busiest_second(arrivals: list[float]) -> int:
    """The most arrivals in any window of one second (sliding)."""
    times = sorted(arrivals)
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def main() -> None:
    args = arguments()
    with tempfile.TemporaryDirectory() as scratch:
        fleet = Fleet(Pki(Path(scratch)), "reconnect", args.clients, args.gateways, args.rate,
                      args.heartbeat, args.sharing, args.rate_sharing)  # fmt: skip
        fleet.listen()
        gateways = [fleet.start_gateway(i) for i in range(args.gateways)]
        sims: list[Process] = []
        try:
            wait_ready(gateways)
            sources = [f"127.0.2.{n + 1}" for n in range(args.sources)]
            for number, (first, count) in enumerate(split(args.clients, args.simulators)):
                own = sources[number :: args.simulators] or sources
                sims.append(fleet.start_simulator(first, count, own, 280.0 / args.simulators))
            started = time.monotonic()
            wait_all_online(args, gateways)
            print(f"{args.clients} clients online after {time.monotonic() - started:.1f} s")
            time.sleep(args.heartbeat + 3)  # every client hears a current reconnect window
            for process in sims:
                process.drain()
            ours = [os.getpid(), *(p.popen.pid for p in sims)]
            other = OtherLoad(ours)
            killed_at = time.time()
            for process in gateways:
                process.stop(signal.SIGKILL if args.signal == "kill" else signal.SIGTERM)
            gateways = [fleet.start_gateway(i) for i in range(args.gateways)]
            arrivals = wait_all_online(args, gateways)
            other.ours += [p.popen.pid for p in gateways]  # (the killed ones are gone)
            report(args, killed_at, arrivals, sims)
            print(f"other processes on the machine used {other.cores():.2f} of "
                  f"{os.cpu_count()} cores meanwhile")  # fmt: skip
        finally:
            for process in sims + gateways:
                process.stop()


def report(
    args: argparse.Namespace, killed_at: float, arrivals: list[float], sims: list[Process]
) -> None:
    back = max(arrivals) - killed_at
    ideal = args.clients / args.rate
    answers: Counter[str] = Counter()
    for process in sims:
        for line in process.drain():
            answers.update(
                {k: int(v) for k, v in line.items() if k.startswith(("refused", "failed"))}
            )
    how = "killed" if args.signal == "kill" else "stopped"
    sharing = f"{args.sharing}, rate {args.rate_sharing}"
    print(f"gateways {args.gateways} ({sharing}) {how} and restarted; ", end="")
    print(f"clients {args.clients}, rate {args.rate:g}/s")
    print(
        f"all back after {back:.1f} s; N/rate = {ideal:.1f} s; ratio {back / ideal:.3f} "
        f"(goal <= 1.1)"
    )
    print(
        f"most admitted in any 1 s window: {busiest_second(arrivals)} "
        f"(rate {args.rate:g}, rate x 1.1 = {args.rate * 1.1:.0f})"
    )
    print(f"clients answered on the way back: {dict(answers) or 'none'}")  # fmt: skip
    first = min(arrivals)
    seconds = Counter(int(t - first) for t in arrivals)
    print(f"first admission {first - killed_at:.1f} s after the kill; admitted per second:")
    print(" ".join(str(seconds[s]) for s in range(max(seconds) + 1)))


if __name__ == "__main__":
    main()
