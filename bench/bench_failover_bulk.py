"""A failover pair's first sync of a large site with recordings (the snapshot of the
database, then every blob), beside `rsync` over SSH of the same data on the same
loopback path, in the same run (goal: at least 0.8 x rsync's throughput).

The primary's site is built before its first start: N audit entries (the way
`bench_failover_sync.py` builds it) and recordings of random (incompressible) content
and mixed sizes in its blob store, named by their SHA-256, each with an ended session
row pointing at it. Both appliances run on loopback addresses with real TLS; Sync Now
is asked of the primary, which has a fresh backup pull and waits for the end. The peer
is `rsync -a --whole-file` pulling the primary's `db/` and `blobs/sha256/` into a fresh
directory through a private OpenSSH server on loopback (`tests/support/sshd.py`).
Bastion syncs every blob to disk before moving it in; plain rsync does not, so
`rsync --fsync` is timed too, for reference (the ratio is against plain rsync).
Both figures count the same bytes (the database files and the blobs), so their ratio is
the ratio of the times. Each round uses a fresh backup (the pair is broken and
established again) and a fresh rsync target; the order alternates.

`--blobs-only` adds, per round, a second Sync Now after the backup's blobs were deleted
(no snapshot: the blob phase alone) beside an rsync of `blobs/sha256/` alone.

    uv run python bench/bench_failover_bulk.py [--rows 300000] [--blob-mib 1024]
        [--rounds 1] [--blobs-only]

Needs `rsync` and `/usr/sbin/sshd` (Debian packages `rsync`, `openssh-server`).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, closing
from pathlib import Path

from bench_failover_sync import KEY, SITE, api, build_site, sync

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.appliance import RunningAppliance, start_appliance  # noqa: E402
from tests.support.sshd import SshServer, ssh_server  # noqa: E402

PRIMARY_HOST, BACKUP_HOST, SSH_HOST = "127.0.0.67", "127.0.0.68", "127.0.0.69"
MIB = 1024 * 1024
GOAL = 0.8


def blob_sizes(total: int, seed: int = 7) -> list[int]:
    """Mixed recording sizes, 16 KiB to 64 MiB (log-uniform), adding up to `total`."""
    rng, sizes, left = random.Random(seed), [], total
    while left > 0:
        size = min(left, int(2 ** rng.uniform(14, 26)))
        sizes.append(size)
        left -= size
    return sizes


def add_recordings(data_dir: Path, total: int) -> tuple[int, int]:
    """Random blobs adding up to `total` bytes in the blob store, each with an ended
    session row pointing at it; (count, bytes)."""
    blobs_dir = data_dir / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, size in enumerate(blob_sizes(total)):
        digest, part = hashlib.sha256(), blobs_dir / f"new-{n}.part"
        with part.open("wb") as out:
            left = size
            while left:
                chunk = os.urandom(min(left, 8 * MIB))
                digest.update(chunk)
                out.write(chunk)
                left -= len(chunk)
        sha = digest.hexdigest()
        part.rename(blobs_dir / sha)
        at = f"2026-01-01 {n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000000"
        rows.append((str(uuid.uuid4()), f"user{n % 50}", f"jump{n % 20}", at, at, sha, size))
    with closing(sqlite3.connect(data_dir / "db" / "bastion.sqlite")) as connection:
        connection.executemany(
            "INSERT INTO sessions (id, username, jump_client_name, jump_client_hostname, "
            "started_at, joined_at, ended_at, end_reason, bytes_from_console, "
            "bytes_from_endpoint, recording_sha256, recording_size, input_recorded) "
            "VALUES (?, ?, ?, 'host.bench.test', ?, ?, ?, 'ended', 0, ?, ?, ?, 0)",
            ((r[0], r[1], r[2], r[3], r[3], r[4], r[6], r[5], r[6]) for r in rows),
        )
        connection.commit()
    return len(rows), total


def tree_bytes(*paths: Path) -> int:
    return sum(f.stat().st_size for p in paths for f in p.rglob("*") if f.is_file())


class Rsync:
    """`rsync -a --whole-file` pulling from the private sshd into a fresh directory."""

    def __init__(self, server: SshServer, work: Path) -> None:
        key = work / "rsync_key"
        key.write_text(server.client_key)
        key.chmod(0o600)
        self.shell = (
            f"ssh -i {key} -p {server.port} -o BatchMode=yes -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        )
        self.remote = f"{server.username}@{server.host}"

    def pull(self, sources: list[Path], target: Path, *extra: str) -> float:
        target.mkdir(parents=True)
        first, *more = (str(s) for s in sources)
        args = [f"{self.remote}:{first}", *(f":{s}" for s in more)]
        command = ["rsync", "-a", "--whole-file", *extra, "-e", self.shell, *args, f"{target}/"]
        os.sync()
        started = time.perf_counter()
        subprocess.run(command, check=True)
        return time.perf_counter() - started


class Pair:
    """The primary and its current backup; `fresh_backup` breaks the pair, starts a new
    backup with an empty data directory and establishes again."""

    def __init__(self, stack: ExitStack, work: Path, primary: RunningAppliance) -> None:
        self.work, self.primary, self.round = work, primary, 0
        self.primary_api = stack.enter_context(api(primary))
        self.primary_api.put("/api/v1/failover/key", json={"key": KEY}).raise_for_status()
        self.backup: RunningAppliance | None = None
        self._backup_stack = ExitStack()
        stack.callback(self._backup_stack.close)

    def fresh_backup(self) -> RunningAppliance:
        if self.backup is not None:
            self.primary_api.post("/api/v1/failover/break").raise_for_status()
            self._backup_stack.close()
            shutil.rmtree(self.backup.data_dir)
        self.round += 1
        stack, data_dir = self._backup_stack, self.work / f"backup-{self.round}"
        args, env = ["--hostname", SITE], {"BASTION_GATEWAY_LISTEN": "off"}
        backup = stack.enter_context(
            start_appliance(self.work, BACKUP_HOST, args, env, data_dir=data_dir)
        )
        backup_api = stack.enter_context(api(backup))
        backup_api.put("/api/v1/failover/key", json={"key": KEY}).raise_for_status()
        body = {
            "backup_host": backup.host,
            "backup_port": backup.port,
            "reverse_host": self.primary.host,
            "reverse_port": self.primary.port,
        }
        self.primary_api.post("/api/v1/failover/establish", json=body).raise_for_status()
        self.backup = backup
        return backup

    def sync(self) -> float:
        os.sync()
        return sync(self.primary_api)


def check_copy(blobs_dir: Path, copy: Path) -> None:
    theirs = {p.name: p.stat().st_size for p in blobs_dir.iterdir()}
    ours = {p.name: p.stat().st_size for p in copy.iterdir() if p.is_file()}
    if ours != theirs:
        raise SystemExit(f"{copy} holds {len(ours)} blobs, the primary {len(theirs)}")


def rate(size: int, seconds: float) -> str:
    return f"{seconds:7.2f} s {size / seconds / 1e6:7.1f} MB/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--blob-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--blobs-only", action="store_true")
    options = parser.parse_args()
    if not shutil.which("rsync"):
        raise SystemExit("rsync is needed (Debian package rsync)")
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        site = work / "primary"
        started = time.perf_counter()
        build_site(site, options.rows)
        count, blob_bytes = add_recordings(site, options.blob_mib * MIB)
        took = time.perf_counter() - started
        print(
            f"site built in {took:.1f} s: {options.rows:,} audit entries, {count} recordings, "
            f"{blob_bytes / 1e6:,.0f} MB of blobs"
        )
        args, env = ["--hostname", SITE], {"BASTION_GATEWAY_LISTEN": "off"}
        primary = stack.enter_context(start_appliance(work, PRIMARY_HOST, args, env, data_dir=site))
        server = stack.enter_context(ssh_server(work / "sshd", SSH_HOST))
        rsync, pair = Rsync(server, work), Pair(stack, work, primary)
        db_dir, blobs_dir = site / "db", site / "blobs" / "sha256"
        results: dict[str, list[float]] = {
            "bastion": [],
            "rsync": [],
            "fsync": [],
            "blobs": [],
            "rblobs": [],
        }
        size = 0
        for n in range(options.rounds):
            backup = pair.fresh_backup()
            target = work / f"rsync-{n}"
            size = tree_bytes(db_dir, blobs_dir)  # the live database moves a little
            first = [
                ("bastion", pair.sync),
                ("rsync", functools.partial(rsync.pull, [db_dir, blobs_dir], target)),
            ]
            for name, run in first if n % 2 == 0 else first[::-1]:
                results[name].append(run())
            check_copy(blobs_dir, backup.data_dir / "blobs" / "sha256")
            check_copy(blobs_dir, target / "sha256")
            line = f"round {n + 1}: bastion {rate(size, results['bastion'][-1])}"
            line += f"; rsync {rate(size, results['rsync'][-1])}"
            shutil.rmtree(target)
            results["fsync"].append(rsync.pull([db_dir, blobs_dir], target, "--fsync"))
            line += f"; rsync --fsync {results['fsync'][-1]:.2f} s"
            if options.blobs_only:
                shutil.rmtree(backup.data_dir / "blobs" / "sha256")
                results["blobs"].append(pair.sync())
                results["rblobs"].append(rsync.pull([blobs_dir], work / f"rsync-blobs-{n}"))
                check_copy(blobs_dir, backup.data_dir / "blobs" / "sha256")
                check_copy(blobs_dir, work / f"rsync-blobs-{n}" / "sha256")
                line += f"; blobs alone: bastion {results['blobs'][-1]:.2f} s"
                line += f", rsync {results['rblobs'][-1]:.2f} s"
            print(line, flush=True)
            shutil.rmtree(target)
            shutil.rmtree(work / f"rsync-blobs-{n}", ignore_errors=True)
        report(results, size, blob_bytes, options.rounds)


def report(results: dict[str, list[float]], size: int, blob_bytes: int, rounds: int) -> None:
    median = {name: statistics.median(times) for name, times in results.items() if times}
    print(f"\nmedians of {rounds} round(s); {size / 1e6:,.0f} MB each (database files + blobs)")
    print(f"{'':34} {'time':>9} {'throughput':>12}")
    print(f"{'bastion first sync (Sync Now)':34} {rate(size, median['bastion'])}")
    print(f"{'rsync -a --whole-file over ssh':34} {rate(size, median['rsync'])}")
    print(f"{'  the same with --fsync':34} {rate(size, median['fsync'])}")
    ratio = median["rsync"] / median["bastion"]
    verdict = "meets" if ratio >= GOAL else "misses"
    print(f"bastion / rsync throughput: {ratio:.2f} x ({verdict} the goal of {GOAL} x)")
    if "blobs" in median:
        print(f"{'bastion blobs alone':34} {rate(blob_bytes, median['blobs'])}")
        print(f"{'rsync blobs alone':34} {rate(blob_bytes, median['rblobs'])}")
        print(f"blobs alone: {median['rblobs'] / median['blobs']:.2f} x")


if __name__ == "__main__":
    main()
