"""Backup and restore of a large synthetic site, against the same work done by shell tools.

The site: 10,000 accounts and 1,000,000 audit entries (several hundred MB of SQLite).
Backup is compared with `sqlite3 .backup | zstd | openssl enc`; restore (into a copy of
the live site, as an appliance restores) with `openssl enc -d | zstd -d` followed by
`sqlite3 live.sqlite ".restore restored.sqlite"`. Each side runs in a child process so
that its peak resident memory and its CPU time (user and system, all its threads and
processes) are its own. With `--rounds N` each restore runs N times, alternating ours
and theirs, and the median of each is reported (the machine's noise then hits both alike).

    uv run python bench/bench_backup.py [--audit 1000000] [--accounts 10000] [--rounds 3]
                                        [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSPHRASE = "benchmark-passphrase"


def build_site(data_dir: Path, accounts: int, audit: int) -> Path:
    from bastion.platform.db.engine import make_engine, migrate

    (data_dir / "db").mkdir(parents=True)
    database = data_dir / "db" / "bastion.sqlite"
    engine = make_engine(f"sqlite:///{database}")
    migrate(engine)
    engine.dispose()
    connection = sqlite3.connect(database)
    hashed = "$argon2id$v=19$m=65536,t=3,p=4$" + "x" * 70
    connection.executemany(
        "INSERT INTO accounts (username, display_name, role, password_hash, must_change_password,"
        " disabled, created_at) VALUES (?, ?, 'representative', ?, 0, 0, '2026-01-01 00:00:00')",
        ((f"user{i:05d}", f"User number {i}", hashed) for i in range(accounts)),
    )
    details = json.dumps({"note": "x" * 200, "count": 3})
    rows = (
        (
            f"2026-01-01 00:{i % 60:02d}:00",
            f"user{i % accounts:05d}",
            "account.update",
            f"user{(i * 7) % accounts:05d}",
            details,
            "192.0.2.10",
        )
        for i in range(audit)
    )
    connection.executemany(
        "INSERT INTO audit_log (at, actor, action, target, details, source) VALUES (?,?,?,?,?,?)",
        rows,
    )
    connection.commit()
    connection.close()
    return database


def child(role: str, data_dir: Path, target: Path) -> None:
    """Run one side in this (child) process and print seconds and peak memory as JSON."""
    from bastion.backups import service as backups
    from bastion.platform.db.engine import make_engine
    from bastion.platform.db.models import Base
    from bastion.platform.principals import Actor, Principal, Role

    engine = make_engine(f"sqlite:///{data_dir / 'db' / 'bastion.sqlite'}")
    site = backups.BackupSite(engine, Base.metadata, data_dir, "bench.example", "1.0.0")
    actor = Actor(Principal("bench", Role.ADMINISTRATOR), "127.0.0.1")
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if role == "backup":
        backups.write_file(site, target.parent, PASSPHRASE, "bench").rename(target)
    elif role == "profile":
        profiler = cProfile.Profile()
        with target.open("rb") as upload:
            profiler.runcall(backups.restore, site, actor, upload, PASSPHRASE)
        print_steps(pstats.Stats(profiler))
    else:
        with target.open("rb") as upload:
            backups.restore(site, actor, upload, PASSPHRASE)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    print(
        json.dumps({"seconds": seconds, "peak_kib": after.ru_maxrss, "user": user, "sys": system})
    )


def print_steps(stats: pstats.Stats) -> None:
    """Where a restore's time goes: the backup code's own functions by cumulative time
    (the main thread only; a wait for another thread shows as `result`)."""
    rows = []
    for (path, line, name), entry in stats.stats.items():  # type: ignore[attr-defined]
        if "bastion/backups/" in path or name == "result":
            rows.append((entry[3], f"{Path(path).parent.name}/{Path(path).name}:{line} {name}"))
    for seconds, where in sorted(rows, reverse=True)[:14]:
        print(f"  {seconds:6.2f} s  {where}")


def run_child(role: str, data_dir: Path, target: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", role, str(data_dir), str(target)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def pipeline(command: str) -> dict[str, float]:
    """A shell pipeline's time, the largest resident size of its processes and their CPU."""
    script = (
        "import resource, subprocess, sys, time, json;"
        "t=time.perf_counter(); subprocess.run(sys.argv[1], shell=True, check=True);"
        "r=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps({'seconds': time.perf_counter()-t, 'peak_kib': r.ru_maxrss,"
        " 'user': r.ru_utime, 'sys': r.ru_stime}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, command], capture_output=True, text=True, check=True
    )
    return dict(json.loads(result.stdout))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--audit", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="where one restore's time goes")
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    for tool in ("sqlite3", "zstd", "openssl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed for the comparison; install it (Debian package {tool}).")
    with tempfile.TemporaryDirectory(dir=ROOT / "var" if (ROOT / "var").exists() else None) as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        database = build_site(work / "site", args.accounts, args.audit)
        size = sum(p.stat().st_size for p in database.parent.iterdir())
        print(
            f"site: {args.accounts:,} accounts, {args.audit:,} audit entries, "
            f"{size / 2**20:.0f} MiB of SQLite (built in {time.perf_counter() - started:.0f} s)"
        )
        ours_backup = run_child("backup", work / "site", work / "ours.bastion")
        theirs_backup = pipeline(
            f"sqlite3 {database} '.backup {work}/copy.sqlite' && zstd -q -c {work}/copy.sqlite"
            f" | openssl enc -aes-256-cbc -pbkdf2 -pass pass:{PASSPHRASE} -out {work}/theirs.enc"
        )
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(restore_ours(work))
            theirs.append(restore_theirs(work))
        report(
            size,
            ours_backup,
            median(ours),
            theirs_backup,
            median(theirs),
            (work / "ours.bastion").stat().st_size,
            (work / "theirs.enc").stat().st_size,
        )
        if args.rounds > 1:
            pairs = zip(ours, theirs, strict=True)
            rounds = ", ".join(f"{o['seconds']:.1f}/{t['seconds']:.1f}" for o, t in pairs)
            print(f"restore rounds (bastion/pipeline, s): {rounds}")
        if args.profile:
            print("one more bastion restore, profiled (cumulative seconds):")
            command = [sys.executable, __file__, "--child", "profile"]
            paths = [str(fresh_live_copy(work)), str(work / "ours.bastion")]
            output = subprocess.run([*command, *paths], capture_output=True, text=True, check=True)
            print("\n".join(output.stdout.splitlines()[:-1]))


def fresh_live_copy(work: Path) -> Path:
    """A copy of the site to restore into, as an appliance restores into its live site.

    It is synced to the disk before the restore begins, as a live database at rest is:
    otherwise writing back the copy itself (hundreds of MiB) falls into the first fsync
    of the restore, ours or the peer's, and measures the copy instead."""
    target = work / "restore-into"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(work / "site", target)
    os.sync()
    return target


def restore_ours(work: Path) -> dict[str, float]:
    return run_child("restore", fresh_live_copy(work), work / "ours.bastion")


def restore_theirs(work: Path) -> dict[str, float]:
    live = fresh_live_copy(work) / "db" / "bastion.sqlite"
    (work / "restored.sqlite").unlink(missing_ok=True)
    return pipeline(
        f"openssl enc -d -aes-256-cbc -pbkdf2 -pass pass:{PASSPHRASE} -in {work}/theirs.enc"
        f" | zstd -q -d -o {work}/restored.sqlite"
        f" && sqlite3 {live} '.restore {work}/restored.sqlite'"
    )


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def report(
    size: int,
    ob: dict[str, float],
    orr: dict[str, float],
    tb: dict[str, float],
    tr: dict[str, float],
    ours_bytes: int,
    theirs_bytes: int,
) -> None:
    mib = size / 2**20
    heads = f"{'seconds':>9}{'MiB/s':>9}{'peak MiB':>10}{'file MiB':>10}{'CPU user/sys s':>16}"
    print(f"{'':<34}{heads}")
    for name, m, out in (
        ("bastion backup", ob, ours_bytes),
        ("sqlite3 .backup | zstd | openssl", tb, theirs_bytes),
        ("bastion restore", orr, ours_bytes),
        ("openssl -d | zstd -d; .restore", tr, theirs_bytes),
    ):
        print(
            f"{name:<34}{m['seconds']:>9.1f}{mib / m['seconds']:>9.0f}"
            f"{m['peak_kib'] / 1024:>10.0f}{out / 2**20:>10.0f}"
            f"{m['user']:>10.2f}/{m['sys']:.2f}"
        )
    print(f"ratio backup  (bastion / pipeline): {ob['seconds'] / tb['seconds']:.1f}x")
    print(f"ratio restore (bastion / pipeline): {orr['seconds'] / tr['seconds']:.1f}x")


if __name__ == "__main__":
    main()
