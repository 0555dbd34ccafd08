"""The connection rate shared by gateway processes through one file."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.jump_clients.shared_rate import SharedAdmissionGate, create_rate_file

HAMMER = """
import json, sys, time
from pathlib import Path
from bastion.jump_clients.shared_rate import SharedAdmissionGate
gate = SharedAdmissionGate(Path(sys.argv[1]), 100.0, 10.0, 0.0, 0.0, 2)
print("ready", flush=True)
start = float(sys.stdin.readline())
while time.monotonic() < start:
    pass
admitted = []
while time.monotonic() < start + 1.0:
    now = time.monotonic()
    if gate.reserve(now) == 0.0:
        admitted.append(now)
print(json.dumps(admitted))
"""


def test_gates_on_one_file_share_one_bucket_and_one_queue(tmp_path: Path) -> None:
    path = tmp_path / "rate"
    create_rate_file(path, now=0.0)
    first = SharedAdmissionGate(path, 50.0, 5.0, 0.0, hold=0.101, processes=2)
    second = SharedAdmissionGate(path, 50.0, 5.0, 0.0, hold=0.101, processes=2)
    turns = [gate.reserve(0.0) for gate in [first, second] * 5]
    assert turns == pytest.approx([0.0] * 5 + [0.02, 0.04, 0.06, 0.08, 0.1])  # one bucket
    assert first.reserve(0.0) is None and second.reserve(0.0) is None
    rng = random.Random(0)
    waits = [gate.retry_in(0.0, rng) for gate in [first, second] * 3]
    assert waits == pytest.approx([0.02 * (n + 1) for n in range(6)])  # one queue, not two
    assert first.reconnect_window(1000) == 1000 / 25.0
    first.close()
    second.close()


def test_processes_admitting_at_once_stay_within_the_shared_rate(tmp_path: Path) -> None:
    path = tmp_path / "rate"
    create_rate_file(path, now=time.monotonic())
    command = [sys.executable, "-c", HAMMER, str(path)]
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    start = time.monotonic() + 0.2
    create_rate_file(path, now=start)
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(f"{start}\n")
        process.stdin.flush()
    outputs = [process.communicate(timeout=30)[0] for process in processes]
    admitted = [json.loads(output) for output in outputs]
    assert all(admitted), "each process got some of the rate"
    total = sum(len(times) for times in admitted)
    assert 100 <= total <= 111  # burst 10 + 100/s for one second, across both processes


def test_a_new_rate_rescales_the_shared_backlog_once(tmp_path: Path) -> None:
    path = tmp_path / "rate"
    create_rate_file(path, now=0.0, rate=10.0)
    first = SharedAdmissionGate(path, 10.0, 1.0, 0.0, hold=10.0, processes=2)
    second = SharedAdmissionGate(path, 10.0, 1.0, 0.0, hold=10.0, processes=2)
    turns = [first.reserve(0.0) for _ in range(10)]
    assert turns[-1] == pytest.approx(0.9)  # a backlog of a second at 10/s
    first.set_rate(100.0, 2, 0.01, now=0.0)
    assert first.reserve(0.0) == pytest.approx(0.1)  # the backlog is now a tenth of that
    assert second.reserve(0.0) == pytest.approx(0.11)  # not seen yet: its turn at 10/s...
    second.set_rate(100.0, 2, 0.01, now=0.0)  # ... and seeing it later does not rescale twice
    assert first.reserve(0.0) == pytest.approx(0.21)
    assert second.reserve(0.0) == pytest.approx(0.22)
    first.close()
    second.close()
