"""The pair's upgrade runbook: total time of each mode, and how long the site does not
answer, seen by a client that asks each appliance's `/check_health` every 10 ms.

Two real appliances on loopback addresses and a real update service offering site
releases of this project's own source; each runs a Jump Client gateway, so verifying
opens a test session on each. The synchronous upgrade keeps the roles, so the
site is the first appliance throughout, down while it installs itself. The asynchronous
upgrade moves the site to the second appliance at its swing step: before that step ends
the site is the first appliance, after it the second. Without shared addresses on
loopback the swing itself moves nothing; `--shared-ip` runs the asynchronous upgrade
in network namespaces instead, where the client polls the shared address that moves at
the swing (needs root).

`--rows N --blob-mib M` upgrade a large site: before its first start the primary holds
N audit entries and M MiB of recordings (built as `bench_failover_sync.py` and
`bench_failover_bulk.py` build theirs), which the first sync brings to the backup; the
figures then include each step's time, to show which ones grow with the site.

    uv run python bench/bench_pair_upgrade.py [--shared-ip] [--rows 1000000] [--blob-mib 1024]
"""

from __future__ import annotations

import argparse
import itertools
import ssl
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_failover_bulk import MIB, add_recordings  # noqa: E402
from bench_failover_sync import build_site  # noqa: E402

from tests.support.appliance import free_port  # noqa: E402
from tests.support.pair_node import Node  # noqa: E402
from tests.support.pair_upgrade import ended, start, upgrade_pair, wait_for  # noqa: E402

PASSPHRASE = "the benchmark's backup passphrase"


def poll(node: Node, stop: threading.Event, answers: list[float]) -> None:
    """Every 10 ms: when `node` answered 200 (wall-clock time, as the runbook records)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with httpx.Client(verify=context, timeout=httpx.Timeout(0.5)) as client:
        while not stop.is_set():
            try:
                if client.get(f"{node.appliance.url}/check_health").status_code == 200:
                    answers.append(time.time())
            except httpx.HTTPError:
                pass
            time.sleep(0.01)


def longest_gap(times: list[float], start_at: float, end_at: float) -> float:
    inside = [start_at, *(t for t in times if start_at <= t <= end_at), end_at]
    return max(b - a for a, b in itertools.pairwise(inside))


def gateway(host: str) -> dict[str, str]:
    """Each appliance runs a Jump Client gateway, as a site does: verifying then opens a
    test session."""
    return {"BASTION_GATEWAY_LISTEN": f"{host}:{free_port(host)}"}


def run(first: Node, second: Node, release: str, mode: str) -> tuple[float, float]:
    """The runbook's total time and the longest time the site did not answer; each step's
    time is printed."""
    stop = threading.Event()
    seen: dict[str, list[float]] = {"first": [], "second": []}
    pollers = [
        threading.Thread(target=poll, args=(node, stop, seen[name]))
        for name, node in (("first", first), ("second", second))
    ]
    for poller in pollers:
        poller.start()
    began = time.time()
    start(first, release, mode, PASSPHRASE)
    report = wait_for(first, ended, timeout=900)
    finished = time.time()
    time.sleep(1)
    stop.set()
    for poller in pollers:
        poller.join()
    assert report["state"] == "done", report
    print(
        f"{mode}: " + ", ".join(f"{s['name']} {s.get('seconds', 0):.0f} s" for s in report["steps"])
    )
    if mode == "sync":
        gap = longest_gap(seen["first"], began, finished)
    else:
        swing = next(s for s in report["steps"] if s["name"] == "swing")
        moved = datetime.fromisoformat(swing["ended_at"]).timestamp()  # to the second
        gap = max(
            longest_gap(seen["first"], began, moved),
            longest_gap(seen["second"], moved, finished),
        )
    return float(report["total_seconds"]), gap


def shared_ip() -> None:
    """The asynchronous upgrade in network namespaces: the client polls the shared
    address itself, which moves at the swing (needs root)."""
    from tests.support import netns
    from tests.support.shared_ip import longest_gap as gap_of
    from tests.support.shared_ip import upgradable_pair, upgrade_while_polling

    why = netns.unavailable()
    if why:
        sys.exit(why)
    with (
        tempfile.TemporaryDirectory(prefix="bench-pair-upgrade-ip-") as tmp,
        upgradable_pair(Path(tmp), ["1.2.0"]) as (primary, backup, client),
    ):
        body = {"releases": ["site 1.2.0"], "mode": "async", "backup_passphrase": PASSPHRASE}
        answers, report = upgrade_while_polling(primary, backup, client, body)
    assert report is not None and report["state"] == "done", report
    print("| asynchronous pair upgrade, shared IP | total time | answers | longest gap |")
    print("| --- | --- | --- | --- |")
    print(f"| 10 ms poller on the shared address | {report['total_seconds']:.0f} s "
          f"| {len(answers)} | {gap_of(answers):.2f} s |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-ip", action="store_true")
    parser.add_argument("--rows", type=int, default=0, help="audit entries on the site")
    parser.add_argument("--blob-mib", type=int, default=0, help="MiB of recordings")
    options = parser.parse_args()
    if options.shared_ip:
        shared_ip()
        return

    def seed(data_dir: Path) -> None:
        if not (options.rows or options.blob_mib):
            return
        started = time.perf_counter()
        build_site(data_dir, options.rows)
        count, size = add_recordings(data_dir, options.blob_mib * MIB)
        database = (data_dir / "db" / "bastion.sqlite").stat().st_size
        print(
            f"site: {options.rows:,} audit entries, database {database / MIB:,.0f} MiB, "
            f"{count} recordings of {size / MIB:,.0f} MiB "
            f"(built in {time.perf_counter() - started:.0f} s)"
        )

    with tempfile.TemporaryDirectory(prefix="bench-pair-upgrade-") as tmp:
        hosts = ("127.0.0.201", "127.0.0.202")
        pair = upgrade_pair(
            Path(tmp), "127.0.0.200", hosts, ["1.2.0", "1.3.0"], env_for=gateway, seed=seed
        )
        with pair as (a, b):
            sync_total, sync_gap = run(a, b, "site 1.2.0", "sync")
            print(f"sync: {sync_total:.0f} s in all, the site did not answer for {sync_gap:.2f} s")
            assert a.call("POST", "/api/v1/failover/sync").status_code == 200
            async_total, async_gap = run(a, b, "site 1.3.0", "async")
            print(f"async: {async_total:.0f} s in all, longest gap {async_gap:.2f} s")
    print()
    print("| pair upgrade | total time | longest time the site did not answer |")
    print("| --- | --- | --- |")
    print(f"| synchronous (primary first) | {sync_total:.0f} s | {sync_gap:.2f} s |")
    print(
        f"| asynchronous (backup first, then the swing) | {async_total:.0f} s | {async_gap:.2f} s |"
    )


if __name__ == "__main__":
    main()
