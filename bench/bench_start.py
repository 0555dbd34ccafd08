"""How long an appliance takes from its process starting to its first healthy answer.

Starts a real appliance (supervisor, worker, gateway) on 127.0.0.53 with a fresh data
directory several times, and times spawn -> `/check_health` 200: with compiled
bytecode kept, and with none to read and none written (an empty PYTHONPYCACHEPREFIX and
PYTHONDONTWRITEBYTECODE=1: what every process met on the CI machine before the suite
kept its bytecode). The peer is a bare `python -c pass` on the same interpreter, the floor any
start pays. Prints one table.

    uv run python bench/bench_start.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.appliance import start_appliance


def appliance_start(env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        began = time.monotonic()
        with start_appliance(Path(scratch), host="127.0.0.53", env=env):
            return time.monotonic() - began


def no_bytecode() -> float:
    with tempfile.TemporaryDirectory() as empty:
        return appliance_start({"PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"})


def bare_python() -> float:
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    appliance_start({})  # the first start writes the bytecode the next ones read
    rows = [
        ("appliance, bytecode kept", [appliance_start({}) for _ in range(rounds)]),
        ("appliance, no bytecode", [no_bytecode() for _ in range(rounds)]),
        ("peer: python -c pass", [bare_python() for _ in range(rounds)]),
    ]
    print(f"{'start to first healthy answer':<40} {'median':>8} {'min':>8} {'max':>8}")
    for name, seconds in rows:
        print(
            f"{name:<40} {statistics.median(seconds):>7.2f}s "
            f"{min(seconds):>7.2f}s {max(seconds):>7.2f}s"
        )


if __name__ == "__main__":
    main()
