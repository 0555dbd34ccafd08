"""A throw-away PostgreSQL server on loopback, started from the system's server binaries."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from tests.conftest import skip_or_fail
from tests.support.appliance import free_port


def find_binaries() -> str | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database on this server; its URL."""
        with psycopg.connect(
            f"host={self.host} port={self.port} user={self.user}", autocommit=True
        ) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_owner(command: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else command


@contextmanager
def available_server(host: str = "127.0.0.1") -> Iterator[PostgresServer]:
    """`postgres_server` from the system's binaries; without them the test is skipped
    (a failure where every test must run: `skip_or_fail`)."""
    bindir = find_binaries()
    if bindir is None:
        skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    with postgres_server(bindir, host) as running:  # type: ignore[arg-type]
        yield running


@contextmanager
def postgres_server(bindir: str, host: str = "127.0.0.1") -> Iterator[PostgresServer]:
    """initdb, start, yield, stop and delete; as root, the server runs as `postgres`."""
    owner = "postgres" if os.geteuid() == 0 else None
    user = owner or pwd.getpwuid(os.geteuid()).pw_name
    root = tempfile.mkdtemp(prefix="bastion-pg-")
    if owner:
        record = pwd.getpwnam(owner)
        os.chown(root, record.pw_uid, record.pw_gid)
    data, port = os.path.join(root, "data"), free_port(host)

    def run(*args: str) -> None:
        subprocess.run(_as_owner(list(args), owner), check=True, capture_output=True)

    try:
        run(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", user, "--no-sync")
        options = f"-h {host} -p {port} -k {root} -F"
        run(f"{bindir}/pg_ctl", "-D", data, "-o", options, "-l", f"{root}/log", "-w", "start")
        _wait_ready(bindir, host, port, owner)
        yield PostgresServer(host, port, user)
    finally:
        subprocess.run(
            _as_owner([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], owner),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(bindir: str, host: str, port: int, owner: str | None) -> None:
    ready = os.path.join(bindir, "pg_isready")
    for _ in range(100):
        result = subprocess.run(
            _as_owner([ready, "-h", host, "-p", str(port)], owner), capture_output=True
        )
        if result.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("PostgreSQL did not become ready")
