"""Requests per second and latency of the appliance, and its memory at idle and under load.

Starts a real appliance process on 127.0.0.51 and drives `/check_health` and an
authenticated API read (`GET /api/v1/accounts`) over keep-alive TLS connections
with 1 and 50 concurrent clients. Prints one table.

    uv run python bench/bench_appliance.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.test_api import create_client, get_token
from tests.support.appliance import RunningAppliance, start_appliance


@dataclass
class Result:
    target: str
    clients: int
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    def row(self) -> str:
        ordered = sorted(self.latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        rps = self.requests / self.seconds
        return (
            f"{self.target:<22} {self.clients:>7} {rps:>9.0f} {p50:>8.1f} {p99:>8.1f} "
            f"{self.errors:>7}"
        )


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` and its children: the supervisor and its worker."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(rss_kib(int(child)) for child in children)


class PeakMemory(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.05)


async def drive(
    app: RunningAppliance, path: str, headers: dict[str, str], clients: int, seconds: float
) -> Result:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        nonlocal errors
        async with httpx.AsyncClient(
            base_url=app.url, verify=app.tls(), headers=headers, timeout=30
        ) as client:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    return Result(path, clients, len(latencies), errors, time.perf_counter() - started, latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, start_appliance(Path(tmp), host="127.0.0.51") as app:
        token = get_token(app, create_client(app, "bench")).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        time.sleep(1)
        idle = rss_kib(app.process.pid)
        monitor = PeakMemory(app.process.pid)
        monitor.start()
        results = [
            asyncio.run(drive(app, path, headers, clients, args.seconds))
            for path, headers in (("/check_health", {}), ("/api/v1/accounts", auth))
            for clients in (1, 50)
        ]
        monitor.running = False
        monitor.join()
    print(f"{'target':<22} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for result in results:
        print(result.row())
    print(
        f"appliance resident memory (supervisor and worker): idle {idle / 1024:.1f} MiB, "
        f"peak under load {monitor.peak / 1024:.1f} MiB"
    )
    print("load generator: httpx (async, keep-alive TLS) in this process, on the same 2 cores")


if __name__ == "__main__":
    main()
