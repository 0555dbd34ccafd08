"""Start a real appliance process on a loopback address for integration and browser tests."""

from __future__ import annotations

import gc
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bastion.platform.db.engine import STATEMENT_ON_THE_LOOP

START_TIMEOUT = 60.0


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningAppliance:
    host: str
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)
    trust: list[Path] = field(default_factory=list)
    """More CA files to trust, for a site that serves a certificate of its own CA."""
    verify_hostname: bool = True

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "certs" / "internal-ca.pem"

    def tls(self) -> ssl.SSLContext:
        """A client TLS context that trusts this appliance's internal CA (and `trust`)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        for extra in self.trust:
            context.load_verify_locations(cafile=str(extra))
        context.check_hostname = self.verify_hostname
        return context

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 15)
        return httpx.Client(base_url=self.url, verify=self.tls(), **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def served_off_the_loop(self) -> None:
        """Fail if the appliance logged a database statement run on an event loop (see
        `bastion.platform.db.engine.report_statements_on_the_loop`): every test that
        runs one checks every request and background task it made the appliance do."""
        found = [line for line in self.log().splitlines() if STATEMENT_ON_THE_LOOP in line]
        assert not found, "\n".join(found)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def appliance_command(
    data_dir: Path, listen: Sequence[str], extra: Sequence[str] = ()
) -> list[str]:
    command = [sys.executable, "-m", "bastion", "appliance", "serve", "--data", str(data_dir)]
    for address in listen:
        command += ["--listen", address]
    return [*command, *extra]


def test_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "BASTION_PASSWORD_HASH_FAST": "1",
            "BASTION_NTP_SERVER_DEFAULT": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


test_environment.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def _answers(appliance: RunningAppliance) -> bool:
    """One health poll. While an appliance (re)starts, a connection may be reset half way,
    e.g. by a killed predecessor's worker that still held the port for a moment; httpx
    then leaves its TLS socket to the garbage collector, which is no failure here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            with appliance.client() as client:
                return client.get("/check_health").status_code == 200
        except httpx.HTTPError:
            return False
        finally:
            gc.collect()


def wait_healthy(appliance: RunningAppliance, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if appliance.process.poll() is not None:
            raise RuntimeError(
                f"appliance exited with {appliance.process.returncode}:\n{appliance.log()}"
            )
        if appliance.ca_file.exists() and _answers(appliance):
            return
        time.sleep(0.1)
    appliance.stop(signal.SIGKILL)
    raise RuntimeError(f"appliance did not become healthy in {timeout}s:\n{appliance.log()}")


@contextmanager
def start_appliance(
    tmp_path: Path,
    host: str = "127.0.0.21",
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    data_dir: Path | None = None,
    port: int | None = None,
    trust: Sequence[Path] = (),
    verify_hostname: bool = True,
) -> Iterator[RunningAppliance]:
    """A running appliance with a fresh (or given) data directory, stopped on exit;
    `trust` and `verify_hostname` as `RunningAppliance` takes them (also while waiting
    for it to answer)."""
    data_dir = data_dir or tmp_path / f"appliance-{host}"
    port = port or free_port(host)
    log_path = tmp_path / f"appliance-{host}-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            appliance_command(data_dir, [f"{host}:{port}"], extra_args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=test_environment(env),
        )
    appliance = RunningAppliance(
        host, port, data_dir, log_path, process, env or {}, list(trust), verify_hostname
    )
    try:
        wait_healthy(appliance)
        yield appliance
    finally:
        appliance.stop()
    appliance.served_off_the_loop()
