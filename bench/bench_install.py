"""Downtime of an install: failed requests and the longest gap while a release installs.

Starts a real appliance process on 127.0.0.52 (with
BASTION_INSTALL_PROBATION_SECONDS=5 so that an install ends in seconds) and, while
the supervisor installs a release asked for on its control socket, requests
`/check_health` and an authenticated API read (`GET /api/v1/accounts`) every
`--interval-ms`, each over a new TLS connection, from two load threads. One more
keep-alive connection makes a request before the install, stays idle through it,
and makes one after. Two scenarios, each on a fresh appliance:

- site: site 1.1.0 (a wheel of this checkout) replaces the factory site 1.0.0;
- base then site: base 1.1.0 (same wheel) re-executes the supervisor, then site 1.1.0
  requiring base>=1.1 installs; the two windows are measured separately.

The packages are copied into the appliance's blob store and the install asked for
straight from the supervisor: the update channel (TUF download) is not measured here
(see bench_updates.py). Prints one table, the goals met or missed, and a timeline of
the supervisor's log lines with the failed requests and longest gaps placed among them.

    uv run python bench/bench_install.py [--rounds 1] [--interval-ms 10]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import select
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bastion.installs.rules import Estimate, estimate
from bastion.releases.packages import PackageInfo, build_package
from bastion.releases.versions import ReleaseKind, parse_requirement, parse_version
from bastion.supervisor import messages
from bastion.supervisor.client import SupervisorClient
from bastion.supervisor.journal import PlannedRelease
from tests.integration.test_api import create_client, get_token
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.releases import project_wheel

HOST = "127.0.0.52"
VERSION = "1.1.0"
PROBATION_SECONDS = "5"
GOAL_GAP_MS = 500.0
INSTALL_TIMEOUT = 300.0
MARGIN = 1.0
"""Seconds of load before the install request and after the install ends."""


# Load.


@dataclass
class Sample:
    target: str
    started: float
    ended: float
    error: str | None  # None: 200
    connected: bool  # the request opened a TCP connection of its own
    retry_after: str | None = None  # what a refused change was told


class Load(threading.Thread):
    """Request `path` every `interval` seconds, each over a new TLS connection."""

    def __init__(
        self,
        app: RunningAppliance,
        target: str,
        path: str,
        headers: dict[str, str],
        interval: float,
        change: bool = False,
    ) -> None:
        super().__init__(daemon=True, name=f"load {target}")
        self.app, self.target, self.path, self.headers = app, target, path, headers
        self.interval, self.change = interval, change
        self.samples: list[Sample] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        # No keep-alive: every request opens (and closes) its own TLS connection.
        with httpx.Client(
            base_url=self.app.url,
            verify=self.app.tls(),
            headers=self.headers,
            timeout=10,
            http2=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            due = time.time()
            while not self.stopping.is_set():
                self.samples.append(self.one(client))
                due += self.interval
                pause = due - time.time()
                if pause > 0:
                    time.sleep(pause)
                else:
                    due = time.time()  # late: go on at once, without a burst to catch up

    def one(self, client: httpx.Client) -> Sample:
        started, error, trace, retry_after = time.time(), None, Connects(), None
        try:
            if not self.change:
                response = client.get(self.path, extensions={"trace": trace})
            else:
                change = {"display_name": f"bench {time.time():.3f}"}
                response = client.patch(self.path, json=change, extensions={"trace": trace})
            if response.status_code != 200:
                error = f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after")
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        return Sample(self.target, started, time.time(), error, trace.count > 0, retry_after)


class Connects:
    """An httpx trace callback counting the TCP connections a request opened."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self.count += 1


class IdleConnection:
    """A keep-alive connection used before the install and after it, idle in between."""

    def __init__(self, app: RunningAppliance) -> None:
        self.client = httpx.Client(base_url=app.url, verify=app.tls(), timeout=10, http2=False)
        self.used_at = 0.0
        self.closed_at: float | None = None
        """When the connection became readable while idle: the server closed it."""
        self.result = "not run"
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def before(self) -> None:
        with self.client.stream("GET", "/check_health") as response:
            sock = response.extensions["network_stream"].get_extra_info("socket")
            response.read()
        response.raise_for_status()
        self.used_at = time.time()
        self._watcher = threading.Thread(target=self._watch, args=(sock,), daemon=True)
        self._watcher.start()

    def _watch(self, sock: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable:
                    self.closed_at = time.time()
                    return
        except (OSError, ValueError):
            return

    def after(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        trace = Connects()
        try:
            response = self.client.get("/check_health", extensions={"trace": trace})
        except httpx.HTTPError as exc:
            self.result = f"error: {type(exc).__name__}: {exc}"
            return
        finally:
            self.client.close()
        how = "a new connection, reconnected" if trace.count else "the same connection"
        self.result = f"HTTP {response.status_code} on {how}"


# The install.


@dataclass
class Packages:
    site: Path
    base: Path
    site_on_base: Path


def build_packages(out: Path) -> Packages:
    wheel = project_wheel(VERSION, out / "wheel")
    version = parse_version(VERSION)
    site = PackageInfo(ReleaseKind.SITE, version, site="localhost")
    base = PackageInfo(ReleaseKind.BASE, version)
    site_on_base = PackageInfo(
        ReleaseKind.SITE, version, requires=(parse_requirement("base>=1.1"),), site="localhost"
    )
    return Packages(
        build_package(site, [wheel], out / "site"),
        build_package(base, [wheel], out / "base"),
        build_package(site_on_base, [wheel], out / "site-on-base"),
    )


def size(path: Path) -> int:
    """Bytes of a file, or of the files in a directory."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def stored(app: RunningAppliance, package: Path) -> str:
    """Copy `package` into the blob store, where a download would have put it."""
    digest = hashlib.sha256(package.read_bytes()).hexdigest()
    dest = app.data_dir / "blobs" / "sha256" / digest
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(package, dest)
    return str(dest)


@dataclass
class Install:
    requested: float
    ended: float
    history: list[dict[str, Any]]
    log: list[tuple[float, str]] = field(default_factory=list)

    def entry(self, release: str) -> dict[str, Any]:
        return next((e for e in self.history if e["release"] == release), {})

    def logged(self, text: str) -> float | None:
        return next((t for t, line in self.log if text in line), None)


def run_install(app: RunningAppliance, releases: list[dict[str, Any]]) -> Install:
    client = SupervisorClient(app.data_dir)
    planned = tuple(PlannedRelease.from_dict(r) for r in releases)
    requested = time.time()
    install_id = client.install(messages.Install(planned, requested_by="bench")).install_id
    names = {f"{r['kind']} {r['version']}" for r in releases}
    deadline = time.monotonic() + INSTALL_TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            status = client.status().to_wire()
        except Exception:  # the supervisor re-executes itself during a base install
            continue
        ours = [e for e in status["history"] if str(e["install_id"]).startswith(install_id)]
        done = {e["release"] for e in ours}
        if status["state"] == "idle" and status["pending"] is None and done >= names:
            return Install(requested, time.time(), ours)
        if any(e["outcome"] != "installed" for e in ours) and status["state"] == "idle":
            return Install(requested, time.time(), ours)
    raise RuntimeError(f"the install did not end within {INSTALL_TIMEOUT:.0f} s")


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (\S+) (.*)$")


def log_lines(app: RunningAppliance, start: float, end: float) -> list[tuple[float, str]]:
    """The appliance's timestamped log lines between `start` and `end` (local time)."""
    lines = []
    for line in app.log().splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            continue
        at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if start - 0.01 <= at <= end:
            logger = match[3].removeprefix("bastion.")
            lines.append((at, f"{match[2]:<7} {logger}: {match[4]}"))
    return lines


# Figures.


READS = ("health", "api")
WRITE = "write"
WRITE_INTERVAL = 0.1


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _matches(sample: Sample, target: str | None) -> bool:
    return sample.target in READS if target is None else sample.target == target


@dataclass
class Window:
    name: str
    start: float
    end: float
    samples: list[Sample]
    install_seconds: float
    supervisor_seconds: str
    estimate: Estimate | None = None
    frozen: tuple[float | None, float | None] = (None, None)
    """When the supervisor logged the pause (frozen) and the switch that ends it."""

    def inside(self, target: str | None = None) -> list[Sample]:
        """Requests sent in the window: of `target`, or reads (health and API) if None."""
        return [
            s for s in self.samples if self.start <= s.started <= self.end and _matches(s, target)
        ]

    def failures(self, target: str | None = None) -> list[Sample]:
        return [s for s in self.inside(target) if s.error is not None]

    def gap(self, target: str | None = None) -> tuple[float, float, float]:
        """The longest time without a successful answer: (seconds, from, to)."""
        ok = sorted(s.ended for s in self.samples if s.error is None and _matches(s, target))
        before = [t for t in ok if t < self.start][-1:]
        after = [t for t in ok if t > self.end][:1]
        times = before + [t for t in ok if self.start <= t <= self.end] + after
        if len(times) < 2:
            return float("inf"), self.start, self.end
        return max((b - a, a, b) for a, b in pairwise(times))

    def paused(self) -> float | None:
        """Seconds without an accepted change around the refused ones (503): the pause as a
        client saw it, from its last change accepted before to its first accepted after."""
        refused = [s for s in self.inside(WRITE) if s.error == "HTTP 503"]
        if not refused:
            return None
        ok = [s.ended for s in self.samples if s.target == WRITE and s.error is None]
        before = max((t for t in ok if t <= refused[0].started), default=self.start)
        after = min((t for t in ok if t >= refused[-1].ended), default=self.end)
        return after - before

    def paused_by_supervisor(self) -> float | None:
        frozen, switched = self.frozen
        return switched - frozen if frozen is not None and switched is not None else None

    def changes(self) -> str:
        """How long changes were refused: they are paused from the snapshot to the switch."""
        sent = self.inside(WRITE)
        refused = sum(s.error == "HTTP 503" for s in sent)
        other = sum(s.error not in (None, "HTTP 503") for s in sent)
        gap = self.gap(WRITE)[0] * 1000
        told = sorted({s.retry_after for s in sent if s.error == "HTTP 503"} - {None}, key=str)
        paused, by_supervisor = self.paused(), self.paused_by_supervisor()
        return (
            f"changes (PATCH /api/v1/accounts/1 every {WRITE_INTERVAL * 1000:.0f} ms): "
            f"{len(sent)} sent, {refused} refused with 503 while paused "
            f"(Retry-After: {', '.join(str(t) for t in told) or '-'}), {other} other failures; "
            f"writes paused {_ms(paused)} as clients saw it (supervisor: frozen to switched "
            f"{_ms(by_supervisor)}); longest time without an accepted change {gap:.0f} ms"
        )

    def estimated(self) -> str:
        if self.estimate is None:
            return ""
        return (
            f"estimated {self.estimate.seconds:g} s ({self.estimate.breakdown}); "
            f"took {self.install_seconds:.1f} s"
        )

    def row(self, round_no: int) -> str:
        health, api = self.inside("health"), self.inside("api")
        failed_h, failed_a = len(self.failures("health")), len(self.failures("api"))
        gaps = [self.gap(t)[0] * 1000 for t in ("health", "api", None)]
        return (
            f"{round_no:>5} {self.name:<26} {len(health):>6} {failed_h:>6} "
            f"{len(api):>6} {failed_a:>6} {gaps[0]:>7.0f} {gaps[1]:>7.0f} {gaps[2]:>7.0f} "
            f"{self.install_seconds:>8.1f} {self.supervisor_seconds:>6}"
        )


HEADER = (
    f"{'round':>5} {'install window':<26} {'health':>6} {'failed':>6} {'api':>6} {'failed':>6} "
    f"{'gap h':>7} {'gap api':>7} {'gap all':>7} {'install':>8} {'super':>6}\n"
    f"{'':>5} {'':<26} {'req':>6} {'':>6} {'req':>6} {'':>6} "
    f"{'ms':>7} {'ms':>7} {'ms':>7} {'s':>8} {'s':>6}"
)


@dataclass
class Scenario:
    name: str
    windows: list[Window]
    idle: IdleConnection
    install: Install
    connections: int
    requests: int
    load_seconds: float


def run_scenario(
    name: str, tmp: Path, packages: Packages, interval: float, with_base: bool
) -> Scenario:
    env = {"BASTION_INSTALL_PROBATION_SECONDS": PROBATION_SECONDS}
    (tmp / name).mkdir(parents=True)
    with start_appliance(tmp / name, host=HOST, env=env) as app:
        token = get_token(app, create_client(app, "bench")).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        releases: list[dict[str, Any]]
        if with_base:
            releases = [
                {"kind": "base", "version": VERSION, "package": stored(app, packages.base)},
                {
                    "kind": "site",
                    "version": VERSION,
                    "package": stored(app, packages.site_on_base),
                    "requires": ["base>=1.1"],
                },
            ]
        else:
            releases = [{"kind": "site", "version": VERSION, "package": stored(app, packages.site)}]
        idle = IdleConnection(app)
        idle.before()
        loads = [
            Load(app, "health", "/check_health", {}, interval),
            Load(app, "api", "/api/v1/accounts", auth, interval),
            Load(app, WRITE, "/api/v1/accounts/1", auth, WRITE_INTERVAL, change=True),
        ]
        load_started = time.time()
        for load in loads:
            load.start()
        time.sleep(MARGIN)
        database_bytes = size(app.data_dir / "db")
        install = run_install(app, releases)
        time.sleep(MARGIN)
        idle.after()
        for load in loads:
            load.stopping.set()
        for load in loads:
            load.join()
        load_seconds = time.time() - load_started
        install.log = log_lines(app, install.requested, install.ended)
    samples = sorted((s for load in loads for s in load.samples), key=lambda s: s.started)
    site_name = f"site {VERSION}"
    site = install.entry(site_name)
    site_seconds = str(site.get("details", {}).get("seconds", "-"))
    site_package = packages.site_on_base if with_base else packages.site
    probation = float(PROBATION_SECONDS)
    site_estimate = estimate(ReleaseKind.SITE, database_bytes, size(site_package), probation)
    windows = []
    if with_base:
        base_name = f"base {VERSION}"
        base_end = install.logged(f"install of {base_name}:") or install.ended
        base_seconds = str(install.entry(base_name).get("details", {}).get("seconds", "-"))
        site_start = install.logged(f"install {site_name}: planned done") or base_end
        windows.append(
            Window(
                base_name,
                install.requested,
                base_end,
                samples,
                base_end - install.requested,
                base_seconds,
                estimate(ReleaseKind.BASE, database_bytes, size(packages.base)),
            )
        )
        windows.append(
            Window(
                f"{site_name} after base",
                site_start,
                install.ended,
                samples,
                install.ended - site_start,
                site_seconds,
                site_estimate,
                frozen_window(install, site_name),
            )
        )
    else:
        windows.append(
            Window(
                site_name,
                install.requested,
                install.ended,
                samples,
                install.ended - install.requested,
                site_seconds,
                site_estimate,
                frozen_window(install, site_name),
            )
        )
    connections = sum(s.connected for s in samples)
    return Scenario(name, windows, idle, install, connections, len(samples), load_seconds)


def frozen_window(install: Install, release: str) -> tuple[float | None, float | None]:
    return install.logged(f"install {release}: frozen done"), install.logged(
        f"install {release}: switched done"
    )


def timeline(scenario: Scenario, round_no: int) -> list[str]:
    """Log lines, failed requests (grouped) and the longest gaps, relative to the request."""
    origin = scenario.install.requested
    events: list[tuple[float, str]] = [(origin, "bench   install requested")]
    events += scenario.install.log
    failed = [s for w in scenario.windows for s in w.failures()]
    group: list[Sample] = []
    for sample in [*failed, None]:
        if group and (
            sample is None
            or sample.error != group[-1].error
            or sample.target != group[-1].target
            or sample.started - group[-1].started > 0.2
        ):
            first, last = group[0], group[-1]
            span = f" .. +{last.started - origin:.3f}" if len(group) > 1 else ""
            events.append(
                (
                    first.started,
                    f">>> {len(group)} {first.target} request(s) failed: {first.error}"
                    f" (sent +{first.started - origin:.3f}{span}, "
                    f"answered after {(first.ended - first.started) * 1000:.0f} ms)",
                )
            )
            group = []
        if sample is not None:
            group.append(sample)
    for window in scenario.windows:
        seconds, start, end = window.gap()
        events.append(
            (
                start,
                f">>> longest gap in {window.name}: {seconds * 1000:.0f} ms "
                f"(+{start - origin:.3f} .. +{end - origin:.3f})",
            )
        )
    idle = scenario.idle
    if idle.closed_at is not None:
        events.append(
            (
                idle.closed_at,
                f">>> the server closed the idle keep-alive connection "
                f"({idle.closed_at - idle.used_at:.1f} s after its last request)",
            )
        )
    events.append((scenario.install.ended, "bench   supervisor state idle"))
    lines = [f"timeline of round {round_no}, {scenario.name} (seconds after the install request):"]
    lines += [f"  {at - origin:+8.3f}  {text}" for at, text in sorted(events, key=lambda e: e[0])]
    return lines


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--quiet", action="store_true", help="no timeline, unless a request failed")
    args = parser.parse_args()
    interval = args.interval_ms / 1000
    results: list[tuple[int, Scenario]] = []
    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp_name:
        tmp = Path(tmp_name)
        packages = build_packages(tmp / "build")
        for round_no in range(1, args.rounds + 1):
            for name, with_base in (("site", False), ("base then site", True)):
                scenario = run_scenario(
                    f"r{round_no}-{name.replace(' ', '-')}", tmp, packages, interval, with_base
                )
                scenario.name = name
                results.append((round_no, scenario))

    print(HEADER)
    for round_no, scenario in results:
        for window in scenario.windows:
            print(window.row(round_no))
    print(
        "gap: longest time without a successful answer (h: /check_health, api: "
        "GET /api/v1/accounts, all: either); install: install request to supervisor idle "
        "(base: to its history entry, site after base: from its first step); super: the "
        "supervisor's details.seconds (base: first step to the new supervisor's confirmation)"
    )
    print()
    for round_no, scenario in results:
        kinds = Counter(f"{s.target} {s.error}" for w in scenario.windows for s in w.failures())
        by_kind = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"
        print(f"round {round_no}, {scenario.name}: failed requests by kind: {by_kind}")
        for window in scenario.windows:
            print(f"  {window.name}: {window.changes()}")
            print(f"  {window.name}: {window.estimated()}")
        idle = scenario.idle
        closed = (
            f"the server closed it {idle.closed_at - idle.used_at:.1f} s after its last request, "
            f"{idle.closed_at - scenario.install.requested:+.1f} s from the install request"
            if idle.closed_at is not None
            else "the server kept it open"
        )
        print(f"  idle keep-alive connection, request after the install: {idle.result}; {closed}")
        install = scenario.install
        switched = install.logged(f"install site {VERSION}: switched done")
        drained = install.logged(f"install site {VERSION}: drained done")
        if switched is not None and drained is not None:
            waited = install.logged("timeout graceful shutdown exceeded")
            why = (
                "it waited out uvicorn's graceful shutdown timeout for an open connection"
                if waited is not None
                else "no connection held it"
            )
            print(f"  old worker drained {drained - switched:.1f} s after the switch ({why})")
        rate = scenario.requests / scenario.load_seconds
        print(
            f"  load: {scenario.requests} requests ({rate:.0f}/s) over "
            f"{scenario.connections} new TLS connections"
        )
    print()
    print(
        f"goals (worst of {args.rounds} round(s); BASTION_INSTALL_PROBATION_SECONDS="
        f"{PROBATION_SECONDS}, request every {args.interval_ms:g} ms per target):"
    )
    for label, pick in (
        ("site install", lambda w: not w.name.startswith("base")),
        ("base install", lambda w: w.name.startswith("base")),
    ):
        windows = [w for _, s in results for w in s.windows if pick(w)]
        failed = sum(len(w.failures()) for w in windows)
        gap = max(w.gap()[0] for w in windows) * 1000
        print(f"  {label:<13} failed requests {failed:>5}   goal 0        {verdict(failed == 0)}")
        pauses = [p for p in (w.paused() for w in windows) if p is not None]
        if pauses:
            worst = max(pauses) * 1000
            print(
                f"  {label:<13} writes paused {worst:>5.0f} ms  goal < {GOAL_GAP_MS:.0f} ms "
                f"{verdict(worst < GOAL_GAP_MS)}"
            )
        print(
            f"  {label:<13} longest gap {gap:>7.0f} ms  goal < {GOAL_GAP_MS:.0f} ms "
            f"{verdict(gap < GOAL_GAP_MS)}"
        )
    idle_ok = all(s.idle.result.startswith("HTTP 200") for _, s in results)
    print(f"  idle connection's request after the install answered 200: {verdict(idle_ok)}")
    print(
        "load generator: httpx (sync, one thread per target, new TLS connection per request) "
        "in this process, on the same 2 cores as the appliance and the install"
    )
    for round_no, scenario in results:
        failed_any = any(w.failures() for w in scenario.windows)
        if not args.quiet or failed_any:
            print()
            print("\n".join(timeline(scenario, round_no)))


if __name__ == "__main__":
    main()
