"""Throughput and peak memory of the encrypted backup container against zstd | openssl enc.

Makes one synthetic member (default 300 MB: half random blocks, half repetitive
text, like a database with some compressible tables) and, in the same run:

* Bastion: ``write_backup``, then ``open_backup`` (passphrase check + full
  verification pass), then ``extract_to``; each step in its own child process so
  that its peak RSS (``ru_maxrss``) is its own.
* Reference: ``zstd -T1 | openssl enc -aes-256-cbc -pbkdf2`` and the reverse
  (``openssl enc -d | zstd -d``), each process's peak RSS taken from ``wait4``.
  Note that this reference checks no integrity at all, and compresses.

    uv run python bench/bench_backup_file.py [--size-mb 300] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bastion.backups.container import open_backup, write_backup
from bastion.backups.rules import BackupMetadata

PASSPHRASE = "bench passphrase"
BLOCK = 1024 * 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    peak_rss_mib: float
    output_bytes: int


# -- the synthetic input --------------------------------------------------------


def make_input(path: Path, size_mb: int) -> None:
    rng = random.Random(1234)
    line = b'{"id": %d, "name": "endpoint-%d", "state": "online", "version": "1.9.3"}\n'
    with open(path, "wb") as out:
        for index in range(size_mb):
            if index % 2:
                out.write(rng.randbytes(BLOCK))
            else:
                text = b"".join(line % (index * 4096 + n, n) for n in range(14_000))
                out.write(text[:BLOCK].ljust(BLOCK, b"\n"))


# -- Bastion, one step per child process ---------------------------------------------


def _metadata() -> BackupMetadata:
    now = datetime.now(UTC)
    return BackupMetadata("1.0.0", "bench", "bench.example.com", now, ("database",))


def child_step(step: str, source: Path, backup: Path, target: Path) -> dict[str, float]:
    started = time.perf_counter()
    if step == "baseline":
        write_backup(io.BytesIO(), _metadata(), [], PASSPHRASE)
    elif step == "write":
        with open(source, "rb") as member, open(backup, "wb") as out:
            write_backup(out, _metadata(), [("database.bin", member)], PASSPHRASE)
    else:
        with open(backup, "rb") as stream:
            verified = open_backup(stream, PASSPHRASE)
            if step == "extract":
                verified.extract_to(target)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_rss_mib": peak_kib / 1024}


def run_child(step: str, source: Path, backup: Path, target: Path) -> Step:
    os.sync()
    command = [sys.executable, __file__, "--child", step, str(source), str(backup), str(target)]
    result = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
    output = {"write": backup.stat().st_size, "baseline": -1}.get(step, 0)
    name = {"baseline": "bastion no data", "extract": "bastion verify+extract"}.get(step)
    return Step(name or f"bastion {step}", result["seconds"], result["peak_rss_mib"], output)


def bastion_steps(source: Path, work: Path) -> list[Step]:
    backup, target = work / "site.bbk", work / "restored"
    steps = [run_child(step, source, backup, target) for step in ("write", "verify", "extract")]
    steps.insert(0, run_child("baseline", source, backup, target))
    restored = target / "database.bin"
    assert restored.stat().st_size == source.stat().st_size, "extracted size differs"
    restored.unlink()
    return steps


# -- the reference pipeline ---------------------------------------------------------


def _pipeline(first: list[str], second: list[str], source: Path, target: Path) -> Step:
    os.sync()
    started = time.perf_counter()
    with open(source, "rb") as stdin, open(target, "wb") as stdout:
        head = subprocess.Popen(first, stdin=stdin, stdout=subprocess.PIPE)
        tail = subprocess.Popen(second, stdin=head.stdout, stdout=stdout)
        assert head.stdout is not None
        head.stdout.close()
        peaks = [os.wait4(process.pid, 0) for process in (head, tail)]
    seconds = time.perf_counter() - started
    if any(status for _, status, _ in peaks):
        raise RuntimeError(f"{first[0]} | {second[0]} failed")
    head.returncode = tail.returncode = 0
    peak_mib = max(usage.ru_maxrss for _, _, usage in peaks) / 1024
    return Step(f"{first[0]} | {second[0]}", seconds, peak_mib, target.stat().st_size)


def reference_steps(source: Path, work: Path) -> list[Step]:
    sealed, restored = work / "ref.zst.enc", work / "ref.out"
    enc = ["openssl", "enc", "-aes-256-cbc", "-pbkdf2", "-pass", f"pass:{PASSPHRASE}"]
    write = _pipeline(["zstd", "-q", "-c", "-T1"], enc, source, sealed)
    read = _pipeline([*enc, "-d"], ["zstd", "-q", "-d", "-c"], sealed, restored)
    assert restored.stat().st_size == source.stat().st_size, "reference output differs"
    restored.unlink()
    return [replace_name(write, "zstd | openssl enc"), replace_name(read, "openssl -d | zstd -d")]


def replace_name(step: Step, name: str) -> Step:
    return Step(name, step.seconds, step.peak_rss_mib, step.output_bytes)


# -- report -------------------------------------------------------------------


def _row(step: Step, size_mb: int) -> str:
    rate = f"{size_mb * MIB / 1e6 / step.seconds:.0f}" if step.output_bytes >= 0 else "-"
    output = f"{step.output_bytes / 1e6:.1f}" if step.output_bytes > 0 else "-"
    return f"{step.name:<24} {step.seconds:>8.2f} {rate:>8} {step.peak_rss_mib:>13.1f} {output:>10}"


def report(size_mb: int, ours: list[Step], reference: list[Step]) -> None:
    print(f"input: {size_mb} MiB; bastion restore = verify pass + extract pass (with fsync)")
    print(f"{'step':<24} {'seconds':>8} {'MB/s':>8} {'peak RSS MiB':>13} {'output MB':>10}")
    for step in [*ours, *reference]:
        print(_row(step, size_mb))
    by_name = {step.name: step.seconds for step in ours}
    ours_total = by_name["bastion write"] + by_name["bastion verify+extract"]
    reference_total = sum(step.seconds for step in reference)
    print(
        f"\nround trip: bastion {ours_total:.2f} s (write, then verify+extract),"
        f" zstd+openssl {reference_total:.2f} s (write, then read);"
        f" ratio bastion/reference = {ours_total / reference_total:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--dir", help="where to put the work files (e.g. /dev/shm for CPU cost)")
    parser.add_argument("--child", nargs=4, metavar=("STEP", "SOURCE", "BACKUP", "TARGET"))
    args = parser.parse_args()
    if args.child:
        step, *paths = args.child
        print(json.dumps(child_step(step, *(Path(p) for p in paths))))
        return
    with tempfile.TemporaryDirectory(prefix="bench-backup-", dir=args.dir) as temp:
        work = Path(temp)
        source = work / "input.bin"
        make_input(source, args.size_mb)
        report(args.size_mb, bastion_steps(source, work), reference_steps(source, work))


if __name__ == "__main__":
    main()
