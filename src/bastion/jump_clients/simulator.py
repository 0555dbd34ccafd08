"""A fleet of Jump Clients in one process, running the real agent code.

Each simulated endpoint is a `bastion.agents.jump_client.JumpClient` with its own
identity, talking the real protocol over real TLS; only its statistics are made up
(one machine's readings, with the endpoint's own host name). Clients are spread over
several local source addresses, because one address has only ~28,000 ephemeral ports
towards one gateway address; a fleet of 50,000 runs as several simulator processes
(each stays under the open-file cap).

Identities derive from a seed and an index, so the gateway side can build the same
directory (`FleetDirectory`) without any file passing between them.

    python -m bastion.jump_clients.simulator --port 8443 --anchors ca.pem --count 5000

prints one JSON line per `--report-every` seconds: clients online, welcomes, refusals,
failures and a histogram of heartbeat round trips (milliseconds -> count).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from bastion.agents.backoff import BackoffPolicy
from bastion.agents.connection import Endpoint
from bastion.agents.errors import AgentError
from bastion.agents.identity import EndpointIdentity, from_seed
from bastion.agents.jump_client import JumpClient, JumpClientConfig, Observer
from bastion.agents.protocol import Mode, RetryAfter, Statistics, Welcome
from bastion.agents.statistics import collect
from bastion.agents.trust import anchor_fingerprints, anchors_context
from bastion.jump_clients.directory import ClientRecord
from bastion.platform.event_loop import run_event_loop


def fleet_identity(seed: str, index: int) -> EndpointIdentity:
    return from_seed(f"{seed}/{index}".encode())


class FleetDirectory:
    """A `ClientDirectory` of the simulated fleet `seed` (indices 0..size-1).

    Deriving 50,000 keys takes seconds; a gateway that restarts in a benchmark loads them
    from the file `save` wrote instead, as a real one would look them up in its database.
    """

    def __init__(self, records: dict[str, ClientRecord]) -> None:
        self.records = records

    @classmethod
    def derive(cls, seed: str, size: int, passive_every: int = 0) -> FleetDirectory:
        records = {}
        for index in range(size):
            identity = fleet_identity(seed, index)
            mode: Mode = "passive" if passive_every and index % passive_every == 0 else "active"
            records[identity.client_id] = ClientRecord(
                identity.client_id, identity.public_key, mode
            )
        return cls(records)

    def save(self, path: Path) -> None:
        rows = [[r.client_id, r.public_key.hex(), r.mode] for r in self.records.values()]
        path.write_text(json.dumps(rows))

    @classmethod
    def load(cls, path: Path) -> FleetDirectory:
        rows = json.loads(path.read_text())
        return cls({cid: ClientRecord(cid, bytes.fromhex(key), mode) for cid, key, mode in rows})

    async def lookup(self, client_id: str) -> ClientRecord | None:
        return self.records.get(client_id)


@dataclass
class FleetObserver(Observer):
    """Counts what the whole fleet saw; round trips go into a millisecond histogram."""

    online: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    round_trips: Counter[int] = field(default_factory=Counter)

    def welcomed(self, welcome: Welcome) -> None:
        self.online += 1
        self.counts["welcomed"] += 1

    def refused(self, answer: RetryAfter) -> None:
        self.counts[f"refused_{answer.reason}"] += 1

    def failed(self, error: AgentError) -> None:
        self.counts[f"failed_{type(error).__name__}"] += 1

    def heartbeat(self, round_trip: float) -> None:
        self.round_trips[int(round_trip * 1000)] += 1

    def left(self) -> None:
        self.online -= 1

    def lost(self, reason: str) -> None:
        self.counts["lost"] += 1

    def checked_in(self) -> None:
        self.counts["checked_in"] += 1

    def report(self) -> dict[str, object]:
        """What happened since the last report (the online count is a level, not a delta)."""
        report: dict[str, object] = {"online": self.online, **self.counts}
        report["round_trips_ms"] = dict(self.round_trips)
        self.counts.clear()
        self.round_trips.clear()
        return report


@dataclass(frozen=True)
class FleetPlan:
    seed: str
    first: int
    count: int
    endpoint: Endpoint
    anchors: Path
    sources: tuple[str, ...] = ("127.0.0.1",)
    start_rate: float = 0.0
    """Clients started per second (0: all at once)."""
    policy: BackoffPolicy = field(default_factory=BackoffPolicy)


def _statistics(base: Statistics, index: int) -> Statistics:
    name = f"sim-{index:06d}"
    return base.model_copy(update={"hostname": name, "fqdn": f"{name}.fleet.test"})


def build_clients(plan: FleetPlan, observer: FleetObserver) -> list[JumpClient]:
    """The plan's clients, sharing one TLS context and one set of statistics readings."""
    tls = anchors_context(plan.anchors)
    anchors = anchor_fingerprints(plan.anchors)
    base = collect()
    clients = []
    for index in range(plan.first, plan.first + plan.count):
        source = plan.sources[index % len(plan.sources)]
        endpoint = replace(plan.endpoint, source_address=source)
        config = JumpClientConfig(endpoint, anchors=anchors, policy=plan.policy)
        statistics = _statistics(base, index)

        async def report(statistics: Statistics = statistics) -> Statistics:
            return statistics

        rng = random.Random(index)
        identity = fleet_identity(plan.seed, index)
        clients.append(JumpClient(config, identity, tls, report, observer=observer, rng=rng))
    return clients


async def run_fleet(
    plan: FleetPlan, observer: FleetObserver, report_every: float, duration: float
) -> None:
    """Start the plan's clients (paced by `start_rate`), print reports, stop after `duration`."""
    clients = build_clients(plan, observer)
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    reporter = asyncio.create_task(_report(observer, report_every, started))
    try:
        async with asyncio.timeout(duration):
            for number, client in enumerate(clients):
                tasks.append(asyncio.create_task(client.run()))
                if plan.start_rate:
                    await asyncio.sleep(
                        max(0.0, started + number / plan.start_rate - time.monotonic())
                    )
            await asyncio.gather(*tasks)
    except TimeoutError:
        pass
    finally:
        for task in [*tasks, reporter]:
            task.cancel()
        await asyncio.gather(*tasks, reporter, return_exceptions=True)


async def _report(observer: FleetObserver, every: float, started: float) -> None:
    while True:
        await asyncio.sleep(every)
        line = {"t": round(time.monotonic() - started, 3), "wall": time.time(), **observer.report()}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run simulated Jump Clients against a gateway.")
    parser.add_argument("--site", default="bastion.test")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--anchors", type=Path, required=True)
    parser.add_argument("--seed", default="fleet")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--sources", default="127.0.0.1", help="comma-separated local addresses")
    parser.add_argument("--start-rate", type=float, default=0.0)
    parser.add_argument("--report-every", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    endpoint = Endpoint(args.site, args.port, args.address, timeout=args.timeout)
    plan = FleetPlan(
        args.seed,
        args.first,
        args.count,
        endpoint,
        args.anchors,
        tuple(args.sources.split(",")),
        args.start_rate,
    )
    run_event_loop(run_fleet(plan, FleetObserver(), args.report_every, args.duration))


if __name__ == "__main__":
    main()
