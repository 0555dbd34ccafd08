"""CPU time of one authenticated API read through the site's ASGI app, in process.

No HTTP server, no TLS, no load generator: the app is called directly with a bearer
token, one request at a time and then 50 at once, and `time.process_time()` (this
process's CPU, its worker threads' included) is divided by the number of requests. It
tells what the request path itself costs, apart from the sockets and from wrk's share of
the machine (`bench_api.py` measures those together).

    uv run python bench/bench_request_cpu.py [--path /api/v1/accounts] [--requests 3000]
                                             [--postgres] [--running 2,8]

`--postgres` runs the site on a throw-away PostgreSQL server on loopback (the system's
server binaries, as the tests start it); the CPU figure is then this process's alone,
not the server's, and the rate is what to compare. `--running` sets how many requests
run their database turn at once (`platform.admission`) for the 50-at-once runs, one
run per count; by default the count the appliance uses on that database.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bastion.accounts import api_clients
from bastion.accounts.service import AccountsSetup
from bastion.entrypoints import compose
from bastion.entrypoints.serving import initialise
from bastion.entrypoints.web import create_app
from bastion.platform.admission import Admission
from bastion.platform.db.engine import requests_at_once
from bastion.platform.principals import Actor
from bastion.platform.settings import ApplianceSettings
from tests.support.postgres import find_binaries, postgres_server

SITE = "cpu.example.test"
WARM_UP = 200


async def _token(app: Any, client_id: str, secret: str) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"https://{SITE}") as client:
        answer = await client.post(
            "/api/v1/oauth/token", data={"client_id": client_id, "client_secret": secret}
        )
    return str(answer.json()["access_token"])


async def _ask(app: Any, path: str, token: str) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", SITE.encode()), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 443),
        "state": {},
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    if statuses != [200]:
        raise SystemExit(f"{path} answered {statuses}; expected 200")


async def _run(app: Any, path: str, token: str, requests: int, at_once: int) -> tuple[float, float]:
    """CPU milliseconds a request, and requests a second."""

    async def one_after_another(count: int) -> None:
        for _ in range(count):
            await _ask(app, path, token)

    await asyncio.gather(*(one_after_another(WARM_UP // at_once + 1) for _ in range(at_once)))
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one_after_another(requests // at_once) for _ in range(at_once)))
    done = requests // at_once * at_once
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return 1000 * cpu / done, done / wall


@contextmanager
def _database(postgres: bool) -> Iterator[str | None]:
    """None for the embedded SQLite, else the URL of a new database on a throw-away server."""
    if not postgres:
        yield None
        return
    bindir = find_binaries()
    if bindir is None:
        raise SystemExit(
            "--postgres needs the PostgreSQL server binaries (initdb, pg_ctl): "
            "install the Debian package postgresql, or leave out --postgres."
        )
    with postgres_server(bindir, "127.0.0.60") as server:
        yield server.create_database("bench")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", default="/api/v1/accounts")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--running", default="", help="counts to run at once, e.g. 2,8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, _database(args.postgres) as url:
        runtime = compose.build(
            ApplianceSettings(
                data_dir=Path(tmp) / "appliance",
                hostname=SITE,
                listen=["127.0.0.1:8443"],
                password_hash_fast=True,
                ntp_server_default="",
                database_url=url,
            )
        )
        initialise(runtime)
        runtime.serving = True
        app = create_app(runtime)
        with runtime.uow() as uow:
            hasher = runtime.part(AccountsSetup).hasher
            made = api_clients.create_client(uow, hasher, Actor(None, "bench"), "cpu")
            uow.commit()
        token = await _token(app, made.client.client_id, made.client_secret)
        database = runtime.engine.dialect.name
        usual = runtime.database_requests.running
        counts = [int(n) for n in args.running.split(",") if n] or [usual]
        runs = [(1, usual)] + [(50, n) for n in counts]
        for at_once, running in runs:
            runtime.database_requests = Admission(
                total=requests_at_once(runtime.engine), running=running
            )
            per_request, rate = await _run(app, args.path, token, args.requests, at_once)
            print(
                f"GET {args.path} on {database}, {at_once:>2} at once, {running} running: "
                f"{per_request:.2f} ms CPU a request, {rate:.0f} req/s "
                f"({args.requests} requests, in process, no TLS)",
                flush=True,
            )
        runtime.engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
