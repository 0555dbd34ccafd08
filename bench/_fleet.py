"""Shared parts of the gateway benchmarks: a test PKI, gateway processes on inherited
listening sockets (this script plays the supervisor), simulator processes, and the JSON
lines they print.

Run as a script it is one gateway process:

    python bench/_fleet.py --fd 3 --cert server.pem --directory fleet.json ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import signal
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bastion.jump_clients.config import GatewayConfig  # noqa: E402
from bastion.jump_clients.gateway import Gateway  # noqa: E402
from bastion.jump_clients.presence import PresenceBatch  # noqa: E402
from bastion.jump_clients.routing import InProcessMessagePort  # noqa: E402
from bastion.jump_clients.shared_rate import create_rate_file  # noqa: E402
from bastion.jump_clients.simulator import FleetDirectory  # noqa: E402
from bastion.jump_clients.sockets import Sharing, inherited, listening_sockets  # noqa: E402
from bastion.platform.event_loop import run_event_loop  # noqa: E402
from tests.support.pki import TestCa  # noqa: E402

SITE = "bastion.test"


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def machine_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How much CPU processes outside the benchmark took while it ran (a shared machine)."""

    def __init__(self, ours: list[int]) -> None:
        self.ours = ours
        self.started = time.monotonic()
        self.machine = machine_cpu_seconds()
        self.own = self._own()

    def _own(self) -> float:
        total = 0.0
        for pid in self.ours:
            try:
                total += cpu_seconds(pid)
            except OSError:
                continue
        return total

    def cores(self) -> float:
        """Cores used by other processes since this was made."""
        others = (machine_cpu_seconds() - self.machine) - (self._own() - self.own)
        return max(0.0, others) / max(time.monotonic() - self.started, 1e-9)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- one gateway process ----------------------------------------------------------


class ArrivalSink:
    """A presence sink that keeps nothing but the arrival times since it was last read."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.updates = 0

    async def write(self, batch: PresenceBatch) -> None:
        self.updates += len(batch.updates)
        self.arrivals.extend(u.arrived_at for u in batch.updates if u.arrived_at is not None)


async def _serve(args: argparse.Namespace) -> None:
    directory = FleetDirectory.load(Path(args.directory))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert)
    config = GatewayConfig(
        site=SITE,
        gateway_id=f"gateway-{args.index}",
        processes=args.processes,
        connection_rate=args.rate,
        heartbeat_interval=args.heartbeat,
        heartbeat_timeout=args.heartbeat * 3 + 5,
        statistics_interval=args.statistics,
        max_connections=args.max_connections,
        rate_file=Path(args.rate_file) if args.rate_file else None,
    )
    sink = ArrivalSink()
    gateway = Gateway(config, tls, directory, sink, InProcessMessagePort())
    _emit({"ready": True, "index": args.index, "rss_kib": rss_kib()})
    await gateway.serve(inherited(args.fd))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        await asyncio.sleep(1.0)
        arrivals, sink.arrivals = sink.arrivals, []
        _emit(_status(args.index, gateway, arrivals))
    await gateway.stop()


def _status(index: int, gateway: Gateway, arrivals: list[float]) -> dict[str, Any]:
    return {
        "index": index,
        "wall": time.time(),
        "links": len(gateway.links),
        "online": len(gateway.online),
        "rss_kib": rss_kib(),
        "cpu_s": time.process_time(),
        "counters": dict(gateway.counters),
        "arrivals": arrivals,
    }


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def gateway_main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--directory", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--heartbeat", type=float, default=30.0)
    parser.add_argument("--statistics", type=float, default=600.0)
    parser.add_argument("--max-connections", type=int, default=19_000)
    parser.add_argument("--rate-file", default="")
    run_event_loop(_serve(parser.parse_args()))


# -- the harness ------------------------------------------------------------------


@dataclass
class Pki:
    directory: Path
    anchors: Path = field(init=False)
    server: Path = field(init=False)

    def __post_init__(self) -> None:
        ca = TestCa()
        issued = ca.issue([SITE])
        self.anchors = self.directory / "anchors.pem"
        self.server = self.directory / "server.pem"
        self.anchors.write_bytes(ca.pem())
        self.server.write_bytes(issued.certificate_pem() + issued.key_pem())


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[str]
    lines: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    def start_reading(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def drain(self) -> list[dict[str, Any]]:
        found = []
        while not self.lines.empty():
            found.append(self.lines.get_nowait())
        return found

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@dataclass
class Fleet:
    pki: Pki
    seed: str
    size: int
    gateways: int
    rate: float
    heartbeat: float
    sharing: Sharing = "reuseport"
    rate_sharing: str = "file"
    sockets: list[Any] = field(default_factory=list)
    port: int = 0

    def listen(self) -> None:
        """Make what the supervisor owns: the listening sockets and the shared rate file."""
        self.sockets = listening_sockets("127.0.0.1", 0, self.gateways, self.sharing)
        self.port = self.sockets[0].getsockname()[1]
        self.reset_rate()
        FleetDirectory.derive(self.seed, self.size).save(self.directory_file)

    @property
    def directory_file(self) -> Path:
        return self.pki.directory / "fleet.json"

    @property
    def rate_file(self) -> Path:
        return self.pki.directory / "rate"

    def reset_rate(self) -> None:
        if self.rate_sharing == "file":
            create_rate_file(self.rate_file, time.monotonic())

    def start_gateway(self, index: int) -> Process:
        fd = self.sockets[index].fileno()
        command = [
            sys.executable, __file__, "--fd", str(fd), "--cert", str(self.pki.server),
            "--directory", str(self.directory_file), "--index", str(index),
            "--processes", str(self.gateways), "--rate", str(self.rate),
            "--heartbeat", str(self.heartbeat),
            "--rate-file", str(self.rate_file) if self.rate_sharing == "file" else "",
        ]  # fmt: skip
        popen = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, pass_fds=(fd,))
        process = Process(f"gateway-{index}", popen)
        process.start_reading()
        return process

    def start_simulator(self, first: int, count: int, sources: list[str], rate: float) -> Process:
        command = [
            sys.executable, "-m", "bastion.jump_clients.simulator",
            "--port", str(self.port), "--anchors", str(self.pki.anchors), "--seed", self.seed,
            "--first", str(first), "--count", str(count), "--sources", ",".join(sources),
            "--start-rate", str(rate), "--duration", "100000", "--timeout", "30",
        ]  # fmt: skip
        popen = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        process = Process(f"simulator-{first}", popen)
        process.start_reading()
        return process


def wait_ready(gateways: list[Process], timeout: float = 120.0) -> dict[str, int]:
    """Each gateway's resident memory before its first client, once all are serving."""
    baseline: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while len(baseline) < len(gateways):
        if time.monotonic() > deadline:
            raise RuntimeError("gateway processes did not start")
        for process in gateways:
            for line in process.drain():
                if line.get("ready"):
                    baseline[process.name] = line["rss_kib"]
        time.sleep(0.1)
    return baseline


def split(total: int, parts: int) -> list[tuple[int, int]]:
    """(first, count) of `parts` nearly equal slices of `total`."""
    size, extra = divmod(total, parts)
    slices, first = [], 0
    for part in range(parts):
        count = size + (1 if part < extra else 0)
        slices.append((first, count))
        first += count
    return slices


def percentile(histogram: dict[int, int], fraction: float) -> float:
    """The value below which `fraction` of the histogram's samples lie (ms buckets)."""
    total = sum(histogram.values())
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= fraction * total:
            return float(value)
    return float("nan")


if __name__ == "__main__":
    gateway_main()
