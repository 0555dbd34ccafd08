"""A failover pair of two real appliances: how long one changed row takes to reach the
backup when the site holds a million rows (goal: under 1 s), beside the first sync
(a snapshot of the whole site) on the same pair.

The primary's site is built with N audit entries before its first start; both
appliances run on loopback addresses with real TLS. Sync Now is asked of the primary,
which has the backup pull and waits for the end, so each figure is the whole round
trip: both sides prove the inter-appliance key, the backup reads the journal since its
position, applies the batch in one transaction and lists the blobs.

    uv run python bench/bench_failover_sync.py [--rows 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, closing
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.test_api import bearer, create_client, get_token  # noqa: E402
from tests.support.appliance import RunningAppliance, start_appliance  # noqa: E402

SITE = "site.bench.test"
KEY = "benchmark inter-appliance key"
PASSWORD = "a long pass phrase 1"


def build_site(data_dir: Path, rows: int) -> None:
    from bastion.entrypoints.compose import METADATA  # noqa: F401  (every table declared)
    from bastion.platform.db.engine import make_engine, migrate

    (data_dir / "db").mkdir(parents=True)
    database = data_dir / "db" / "bastion.sqlite"
    engine = make_engine(f"sqlite:///{database}")
    migrate(engine)
    engine.dispose()
    details = json.dumps({"note": "x" * 100})
    with closing(sqlite3.connect(database)) as connection:
        connection.executemany(
            "INSERT INTO audit_log (at, actor, action, target, details, source) "
            "VALUES (?, 'bench', 'account.update', ?, ?, '192.0.2.1')",
            ((f"2026-01-01 00:{i % 60:02d}:00", f"user{i}", details) for i in range(rows)),
        )
        connection.commit()


def api(appliance: RunningAppliance) -> httpx.Client:
    token = get_token(appliance, create_client(appliance, "bench")).json()["access_token"]
    return appliance.client(headers=bearer(token), timeout=600)


def sync(primary: httpx.Client) -> float:
    started = time.perf_counter()
    answer = primary.post("/api/v1/failover/sync")
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise SystemExit(f"Sync Now failed: {answer.text}")
    return elapsed


def backup_has(backup: RunningAppliance, username: str) -> bool:
    database = backup.data_dir / "db" / "bastion.sqlite"
    with closing(sqlite3.connect(database)) as connection:
        query = "SELECT COUNT(*) FROM accounts WHERE username = ?"
        return bool(connection.execute(query, (username,)).fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        started = time.perf_counter()
        build_site(work / "primary", options.rows)
        took = time.perf_counter() - started
        print(f"site built: {options.rows:,} audit entries in {took:.1f} s")
        args = ["--hostname", SITE]
        env = {"BASTION_GATEWAY_LISTEN": "off"}
        primary = stack.enter_context(
            start_appliance(work, "127.0.0.61", args, env, data_dir=work / "primary")
        )
        backup = stack.enter_context(start_appliance(work, "127.0.0.62", args, env))
        primary_api, backup_api = (
            stack.enter_context(api(primary)),
            stack.enter_context(api(backup)),
        )
        for client in (primary_api, backup_api):
            client.put("/api/v1/failover/key", json={"key": KEY}).raise_for_status()
        body = {
            "backup_host": backup.host,
            "backup_port": backup.port,
            "reverse_host": primary.host,
            "reverse_port": primary.port,
        }
        primary_api.post("/api/v1/failover/establish", json=body).raise_for_status()
        size = (primary.data_dir / "db" / "bastion.sqlite").stat().st_size
        print(f"primary database: {size / 1e6:,.0f} MB")
        print(f"first sync (snapshot of the whole site): {sync(primary_api):.2f} s")
        figures = []
        for n in range(options.rounds):
            username = f"changed{n}"
            account = {"username": username, "password": PASSWORD, "role": "representative"}
            made = primary_api.post("/api/v1/accounts", json=account)
            made.raise_for_status()
            figures.append(sync(primary_api))
            if not backup_has(backup, username):
                raise SystemExit(f"{username} did not reach the backup")
        print(
            f"one changed row to the backup (Sync Now, end to end), {options.rounds} rounds: "
            f"median {statistics.median(figures):.3f} s, max {max(figures):.3f} s (goal < 1 s)"
        )


if __name__ == "__main__":
    main()
