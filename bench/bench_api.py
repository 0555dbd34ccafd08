"""The appliance's API under load, beside a minimal uvicorn app on the same TLS setup.

Starts a real appliance (`bastion appliance serve`) on 127.0.0.53, creates an API client
on its console (`bastion appliance api-client create`) and trades it for a bearer token
at `POST /api/v1/oauth/token`. Starts the peer, `bench/minimal_app.py` (one async route
returning a small JSON object; the appliance's listener code, uvicorn options, event loop
and TLS certificate and key; one process, as the appliance has one serving worker), on
127.0.0.54. Then drives each target with wrk, 50 keep-alive connections at a time, in
rounds so that the machine's other load falls on all three alike:

- the peer's `GET /`;
- the appliance's `GET /check_health` (goal: at least 0.7 x the peer's rate);
- the appliance's `GET /api/v1/accounts` with the bearer token (goal: p99 under 100 ms).

Prints every run with the serving process's CPU time per request answered (the figure
the machine's noise moves least), then the median and the range of each figure and the
ratio per round.

    uv run python bench/bench_api.py [--seconds 10] [--rounds 3] [--connections 50]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bastion.supervisor.sockets import bind, parse_listen_address
from tests.integration.test_api import create_client, get_token
from tests.support.appliance import RunningAppliance, free_port, start_appliance

WRK = "/usr/bin/wrk"
APPLIANCE_HOST, PEER_HOST = "127.0.0.53", "127.0.0.54"
HEALTH_GOAL_RATIO = 0.7
READ_GOAL_P99_MS = 100.0


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    serving: tuple[int, ...]
    """The processes that serve it (their CPU time is counted)."""
    script: Path | None = None


@dataclass(frozen=True)
class Run:
    target: str
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float = 0.0
    """CPU time of the serving processes per request answered, in microseconds."""

    def row(self) -> str:
        return (
            f"{self.target:<24} {self.rate:>9.0f} {self.p50_ms:>8.1f} {self.p99_ms:>8.1f} "
            f"{self.errors:>7} {self.cpu_us:>8.1f}"
        )


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(target: str, output: str) -> Run:
    """Requests per second, p50 and p99 and failed requests from wrk's `--latency` output."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1)  # type: ignore[union-attr]
    errors = sum(
        int(n)
        for n in re.findall(
            r"(?:Non-2xx or 3xx responses|connect|read|write|timeout):? (\d+)", output
        )
    )
    return Run(target, rate, _milliseconds(p50), _milliseconds(p99), errors)


def drive(target: Target, seconds: int, connections: int) -> Run:
    command = [WRK, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", target.url]
    if target.script is not None:
        command[1:1] = ["-s", str(target.script)]
    before = cpu_seconds(target.serving)
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    spent = cpu_seconds(target.serving) - before
    answered = int(re.search(r"(\d+) requests in", result.stdout).group(1))  # type: ignore[union-attr]
    return replace(parse_wrk(target.name, result.stdout), cpu_us=spent / answered * 1e6)


def cpu_seconds(pids: tuple[int, ...]) -> float:
    """User and system CPU time of the processes so far (`/proc/<pid>/stat`)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def appliance_workers(app: RunningAppliance) -> tuple[int, ...]:
    """The appliance's serving worker: the child of its supervisor running the worker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if parent == app.process.pid and b"bastion.entrypoints.worker" in command:
            found.append(int(entry.name))
    if not found:
        sys.exit("The appliance's worker process was not found.")
    return tuple(found)


@contextmanager
def peer(certs: Path, processes: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """The minimal app on its own listening socket, in `processes` processes: its URL and
    their process ids."""
    address = parse_listen_address(f"{PEER_HOST}:{free_port(PEER_HOST)}")
    listening = bind(address)
    script = Path(__file__).with_name("minimal_app.py")
    command = [sys.executable, str(script), "--certs", str(certs), "--listen", str(address)]
    command += ["--fd", str(listening.fileno())]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    children = [
        subprocess.Popen(command, pass_fds=(listening.fileno(),), env=env) for _ in range(processes)
    ]
    listening.close()
    try:
        yield f"https://{address}", tuple(child.pid for child in children)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(30)


def summary(runs: list[Run]) -> str:
    rates = [r.rate for r in runs]
    p99s = [r.p99_ms for r in runs]
    return (
        f"{runs[0].target:<24} {statistics.median(rates):>9.0f} ({min(rates):.0f}-{max(rates):.0f})"
        f"  p50 {statistics.median(r.p50_ms for r in runs):.1f} ms"
        f"  p99 {statistics.median(p99s):.1f} ms ({min(p99s):.1f}-{max(p99s):.1f})"
        f"  CPU {statistics.median(r.cpu_us for r in runs):.1f} us/request"
    )


def report(rounds: list[list[Run]]) -> None:
    by_target = list(zip(*rounds, strict=True))
    print("\nmedian req/s (range), p50 and p99 (range) over the rounds:")
    for runs in by_target:
        print(summary(list(runs)))
    ratios = [health.rate / minimal.rate for minimal, health, _read in rounds]
    read_p99 = statistics.median(read.p99_ms for _m, _h, read in rounds)
    ratio = statistics.median(ratios)
    listed = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"\n/check_health / peer: {ratio:.2f} (per round: {listed}); goal >= {HEALTH_GOAL_RATIO}")
    print(f"authenticated read p99: {read_p99:.1f} ms; goal < {READ_GOAL_P99_MS:.0f} ms")


def outlasted(app: RunningAppliance, token: str) -> str:
    """From the appliance's `/metrics`: how many database requests held their turn past
    the 50 ms rule (`platform.admission`), against the authenticated reads it answered."""
    with app.client(headers={"Authorization": f"Bearer {token}"}) as client:
        text = client.get("/metrics").text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    turns = sum(s.value for s in samples if s.name == "bastion_database_requests_outlasted_total")
    reads = sum(
        s.value
        for s in samples
        if s.name == "bastion_http_requests_total" and s.labels["route"] == "/api/v1/accounts"
    )
    return (
        f"database requests that outlasted their turn (> 50 ms) over the whole run: "
        f"{turns:.0f}, beside {reads:.0f} authenticated reads answered"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_appliance(Path(tmp), host=APPLIANCE_HOST) as app,
    ):
        token = get_token(app, create_client(app, "bench")).json()["access_token"]
        script = Path(tmp) / "bearer.lua"
        script.write_text(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
        workers = 1
        with peer(app.data_dir / "certs", workers) as (peer_url, peer_pids):
            serving = appliance_workers(app)
            targets = [
                Target("peer GET /", f"{peer_url}/", peer_pids),
                Target("GET /check_health", f"{app.url}/check_health", serving),
                Target("GET /api/v1/accounts", f"{app.url}/api/v1/accounts", serving, script),
            ]
            for target in targets:  # warm up: connections, caches, the thread pool
                drive(target, 2, args.connections)
            heads = f"{'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU us':>8}"
            print(f"{'target':<24} {heads}")
            rounds = []
            for _ in range(args.rounds):
                runs = [drive(t, args.seconds, args.connections) for t in targets]
                rounds.append(runs)
                for run in runs:
                    print(run.row(), flush=True)
        turns = outlasted(app, token)
    report(rounds)
    print(turns)
    print(
        f"\nwrk -t2 -c{args.connections} -d{args.seconds}s over keep-alive TLS; "
        f"{workers} serving process(es) each; {os.cpu_count()} cores shared with the load generator"
    )


if __name__ == "__main__":
    main()
