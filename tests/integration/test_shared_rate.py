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
import pytest

from bastion.jump_clients.shared_rate import SharedAdmissionGate
gate = SharedAdmissionGate(Path(sys.argv[1]), 100.0, 10.0, 0.0, 2)
start = float(sys.argv[2])
while time.monotonic() < start:
    pass
admitted = []
while time.monotonic() < start + 1.0:
    now = time.monotonic()
    if gate.admit(now):
        admitted.append(now)
print(json.dumps(admitted))
"""


def test_gates_on_one_file_share_one_bucket_and_one_queue(tmp_path: Path) -> None:
    path = tmp_path / "rate"
    create_rate_file(path, burst=5.0, now=0.0)
    first = SharedAdmissionGate(path, 50.0, 5.0, 0.0, processes=2)
    second = SharedAdmissionGate(path, 50.0, 5.0, 0.0, processes=2)
    assert sum(gate.admit(0.0) for gate in [first, second] * 10) == 5
    assert not first.admit(0.01) and second.admit(0.02)  # 0.02 s at 50/s: one token
    rng = random.Random(0)
    waits = [gate.retry_in(1.0, rng) for gate in [first, second] * 3]
    assert waits == pytest.approx([0.02 * (n + 1) for n in range(6)])  # one queue, not two
    assert first.reconnect_window(1000) == 1000 / 25.0
    first.close()
    second.close()


def test_processes_admitting_at_once_stay_within_the_shared_rate(tmp_path: Path) -> None:
    path = tmp_path / "rate"
    start = time.monotonic() + 1.5
    create_rate_file(path, burst=10.0, now=start)
    command = [sys.executable, "-c", HAMMER, str(path), str(start)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    admitted = [json.loads(process.communicate(timeout=30)[0]) for process in processes]
    assert all(admitted), "each process got some of the rate"
    total = sum(len(times) for times in admitted)
    assert 100 <= total <= 111  # burst 10 + 100/s for one second, across both processes
