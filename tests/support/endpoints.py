"""Jump Clients as real processes on this machine: installed from an installer file with
`bastion jump-client install`, run as the service runs them (`bastion jump-client run`,
sessions on), stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Client:
    state: Path
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)


def bastion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args], capture_output=True, text=True, timeout=120
    )


def install_and_run(
    installer: Path, state: Path, log: Path, command: str = "jump-client", *options: str
) -> Client:
    """Install a Jump Client (`command` "jumpoint": a Jumpoint) into `state` and start it
    (`run` with `options`), its output going to `log`."""
    done = bastion(command, "install", str(installer), "--dir", str(state))
    assert done.returncode == 0, done.stdout + done.stderr
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bastion", command, "run", "--dir", str(state), *options],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return Client(state, process, log)


def eventually(check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout} s: {what}")
