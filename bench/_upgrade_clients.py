"""Simulated Jump Clients that carry out upgrade orders: the real agent code, one process
for thousands. On an upgrade order a client fetches the build over TLS with the token it
was given, checks its SHA-256, then "restarts": its connection ends and it comes back
reporting the new version (installing the wheel is left out: every client shares one
machine here).

    python bench/_upgrade_clients.py --site S --address A --port P --web-port W \\
        --anchors ca.pem --seed fleet --first 0 --count 5000 --version 1.0.0

prints one JSON line a second: online, upgraded, downloaded bytes, failures, the
heartbeat round trips since the last line (milliseconds -> count), and the garbage
collector's passes since the last line (how many full ones, the longest in ms): a pass
stalls every client of the process, and a heartbeat waiting meanwhile reads as slow.
The process keeps its passes short as the gateways do
(`bastion.platform.collector`) unless `--collector-as-is`. `bench_held_fleet.py` runs
the same clients at the site's version: they connect and stay.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import ssl
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bastion.agents.connection import Endpoint  # noqa: E402
from bastion.agents.errors import UpgradeError  # noqa: E402
from bastion.agents.jump_client import JumpClient, JumpClientConfig  # noqa: E402
from bastion.agents.protocol import Command, CommandResult, Statistics, Upgrade  # noqa: E402
from bastion.agents.statistics import collect  # noqa: E402
from bastion.agents.trust import anchor_fingerprints, anchors_context  # noqa: E402
from bastion.jump_clients.simulator import FleetObserver, fleet_identity  # noqa: E402
from bastion.platform.collector import keep_collections_short  # noqa: E402
from bastion.platform.event_loop import run_event_loop  # noqa: E402

counts: Counter[str] = Counter()


class CollectorPasses:
    """The garbage collector's passes since the last report, timed (`gc.callbacks`)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.full = 0
        self.longest_ms = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        self.longest_ms = max(self.longest_ms, (time.perf_counter() - self.started) * 1000)
        if info["generation"] == 2:
            self.full += 1

    def report(self) -> dict[str, float]:
        said = {"collector_full": self.full, "collector_longest_ms": round(self.longest_ms, 1)}
        self.full, self.longest_ms = 0, 0.0
        return said


class Counted(io.RawIOBase):
    """Where a simulated client's build goes: counted, not kept."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        counts["bytes"] += len(data)
        return len(data)


class Endpoint_:
    """One simulated endpoint: a JumpClient that is replaced by a newer one on upgrade."""

    def __init__(self, args: argparse.Namespace, index: int, tls: ssl.SSLContext, base: Statistics,
                 observer: FleetObserver) -> None:  # fmt: skip
        self.args, self.index, self.tls, self.observer = args, index, tls, observer
        self.version = args.version
        self.base = base
        self.anchors = anchor_fingerprints(args.anchors)
        self.restart = asyncio.Event()
        self.current: JumpClient | None = None

    def client(self) -> JumpClient:
        source = self.args.sources.split(",")[self.index % len(self.args.sources.split(","))]
        endpoint = Endpoint(self.args.site, self.args.port, self.args.address, source, 30.0)
        config = JumpClientConfig(
            replace(endpoint),
            agent_version=self.version,
            anchors=self.anchors,
        )

        async def report() -> Statistics:
            return self.base

        identity = fleet_identity(self.args.seed, self.index)
        self.current = JumpClient(config, identity, self.tls, report, self.command, self.observer)
        return self.current

    async def command(self, command: Command) -> CommandResult:
        order = command.body
        if not isinstance(order, Upgrade):
            return CommandResult(command_id=command.command_id, outcome="done")
        assert self.current is not None
        try:
            await self.current.fetch_build(command.command_id, order, Counted())  # type: ignore[arg-type]
        except UpgradeError as error:
            counts["download_failed"] += 1
            detail = str(error)[:400]
            return CommandResult(command_id=command.command_id, outcome="failed", detail=detail)
        self.version = order.version
        counts["upgraded"] += 1
        asyncio.get_running_loop().call_later(0.5, self.restart.set)
        return CommandResult(command_id=command.command_id, outcome="done", detail="restarting")

    async def run(self) -> None:
        while True:
            self.restart.clear()
            task = asyncio.create_task(self.client().run())
            await self.restart.wait()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def main(args: argparse.Namespace) -> None:
    tls = anchors_context(args.anchors)
    observer = FleetObserver()
    base = collect()
    endpoints = [
        Endpoint_(args, i, tls, base, observer) for i in range(args.first, args.first + args.count)
    ]
    passes = CollectorPasses()
    gc.callbacks.append(passes)
    tasks = [] if args.collector_as_is else [asyncio.create_task(keep_collections_short())]
    for number, endpoint in enumerate(endpoints):
        tasks.append(asyncio.create_task(endpoint.run()))
        if number % 50 == 49:
            await asyncio.sleep(0.05)
    while True:
        await asyncio.sleep(1.0)
        line = {"wall": time.time(), **observer.report(), **passes.report(), **counts}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("--site", "--address", "--seed", "--version", "--sources"):
        parser.add_argument(name, required=name != "--sources", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--anchors", type=Path, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--collector-as-is", action="store_true")
    run_event_loop(main(parser.parse_args()))
