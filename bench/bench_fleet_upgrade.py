"""Fleet upgrade benchmark: N Jump Clients upgrade to a new site release under the site's
caps, against a real appliance (supervisor, worker, gateway processes, SQLite).

N clients of version 1.0.0 (the source's version) are registered in the site's database
and run by simulator processes with the real agent code (each downloads the real build
over TLS, checks it, and comes back on the new version). Once the whole fleet is online,
a site release built from this project's own wheel (1.1.0) is installed: the gateways
restart with the new worker, the clients come back at the site's connection rate, and
each upgrades at its first check-in. With `--cold-start` the release is installed first
and the fleet started after it, every client at once (the worst case: thousands of
connections wait in the listening queue, and clients back from their upgrade wait
behind them). Reports the makespan, from the first upgrade ordered to the last client
back on 1.1.0, against the bandwidth bound (N x build size / cap), the peak number
upgrading at once against the cap, and clients left behind.

    uv run python bench/bench_fleet_upgrade.py --clients 10000 --cap 500 --bandwidth 100
                                               [--connection-rate 300] [--cold-start]

prints the fleet's progress every 5 s (from the first upgrade ordered), then the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert  # noqa: E402

from bastion.jump_clients.models import JumpClientRow  # noqa: E402
from bastion.jump_clients.simulator import fleet_identity  # noqa: E402
from tests.integration.test_api import bearer, create_client, get_token  # noqa: E402
from tests.support.appliance import free_port, start_appliance  # noqa: E402
from tests.support.installs import request_install, store_release, wait_idle  # noqa: E402
from tests.support.releases import project_wheel  # noqa: E402

SITE = "upgrade-bench.example.test"
HOST = "127.0.0.51"
SEED = "upgrade-bench"
SOURCES = [f"127.0.1.{i}" for i in range(1, 9)]


def register(data_dir: Path, count: int) -> None:
    """N clients of version 1.0.0, straight into the site's database."""
    engine = create_engine(f"sqlite:///{data_dir / 'db' / 'bastion.sqlite'}")
    now = datetime.now(UTC)
    rows = []
    for index in range(count):
        identity = fleet_identity(SEED, index)
        rows.append({
            "client_id": identity.client_id, "public_key": identity.public_key,
            "name": f"sim-{index:06d}", "mode": "active", "jump_group": "", "tag": "bench",
            "comments": "", "endpoint": f"{index:064d}", "hostname": f"sim-{index:06d}",
            "fqdn": "", "os": "", "console_user": "", "version": "1.0.0", "revision": "",
            "anchors": "[]", "statistics": "{}", "address": "", "online": False,
            "installed_at": now, "upgrade_state": "", "upgrade_version": "",
            "upgrade_detail": "", "upgrade_first": False,
        })  # fmt: skip
    with engine.begin() as connection:
        for start in range(0, len(rows), 2000):
            connection.execute(insert(JumpClientRow.__table__), rows[start : start + 2000])
    engine.dispose()


def gateway_env(host: str, ports: tuple[int, int], processes: int) -> dict[str, str]:
    """The appliance's settings for `processes` gateway processes on `host`: its gateway
    and web `ports`, the gateway's address the clients are given, the site's URL."""
    gateway, web = ports
    return {
        "BASTION_GATEWAY_LISTEN": f"{host}:{gateway}",
        "BASTION_GATEWAY_ADDRESS": f"{host}:{gateway}",
        "BASTION_PUBLIC_URL": f"https://{host}:{web}",
        "BASTION_GATEWAY_PROCESSES": str(processes),
    }


def simulator_command(
    site: str, host: str, gateway: int, anchors: Path, clients: tuple[int, int],
    sources: list[str],
) -> list[str]:  # fmt: skip
    """A simulator process of `_upgrade_clients.py` running `clients` (first, count) of
    version 1.0.0 against the appliance's `gateway` port on `host`."""
    first, count = clients
    return [
        sys.executable, str(ROOT / "bench" / "_upgrade_clients.py"), "--site", site,
        "--address", host, "--port", str(gateway),
        "--anchors", str(anchors), "--seed", SEED, "--version", "1.0.0",
        "--first", str(first), "--count", str(count), "--sources", ",".join(sources),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--cap", type=int, default=500)
    parser.add_argument("--bandwidth", type=int, default=100, help="MiB/s")
    parser.add_argument("--simulators", type=int, default=2)
    parser.add_argument("--connection-rate", type=int, default=300, help="the site's, per second")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--cold-start", action="store_true",
        help="start the fleet only after the install: every client at once, the worst case",
    )  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-upgrade-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        web, gateway = free_port(HOST), free_port(HOST)
        env = {**gateway_env(HOST, (gateway, web), 2), "BASTION_INSTALL_PROBATION_SECONDS": "1"}
        appliance = stack.enter_context(
            start_appliance(work, host=HOST, port=web, env=env, extra_args=["--hostname", SITE])
        )
        token = get_token(appliance, create_client(appliance, "bench")).json()["access_token"]
        api = stack.enter_context(appliance.client(headers=bearer(token), timeout=120))
        settings = api.get("/api/v1/jump-clients/settings").json()
        settings.update(
            max_concurrent_upgrades=args.cap, upgrade_bandwidth_mib=args.bandwidth,
            connection_rate=args.connection_rate, canary_percent=0, halt_failure_percent=100,
        )  # fmt: skip
        assert api.put("/api/v1/jump-clients/settings", json=settings).status_code == 200
        register(appliance.data_dir, args.clients)
        wheel = project_wheel("1.1.0", work / "wheels")
        data = appliance.data_dir
        release = store_release(data, "site", "1.1.0", wheel, site=SITE)
        anchors = work / "anchors.pem"
        anchors.write_bytes(appliance.ca_file.read_bytes())
        share = args.clients // args.simulators
        count = share * args.simulators

        def simulators() -> None:
            for number in range(args.simulators):
                command = simulator_command(
                    SITE, HOST, gateway, anchors, (number * share, share),
                    SOURCES[number :: args.simulators],
                )  # fmt: skip
                process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=os.environ)
                stack.callback(process.kill)

        print(f"build: {wheel.stat().st_size:,} bytes", flush=True)
        if args.cold_start:
            print("installing site 1.1.0, then starting the fleet ...", flush=True)
            request_install(data, release)
            assert wait_idle(data, timeout=600)["history"][-1]["outcome"] == "installed"
            simulators()
        else:
            simulators()
            held = wait_online(api, count, args.timeout)
            print(f"the fleet of {count:,} online on 1.0.0 in {held:.1f} s; installing 1.1.0 ...")
            request_install(data, release)
        report(api, args, wheel.stat().st_size, count)
        assert wait_idle(data, timeout=600)["history"][-1]["outcome"] == "installed"


def wait_online(api: object, count: int, timeout: float) -> float:
    """Seconds until all `count` clients are online."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        query = {"status": "online", "limit": 1}
        online = api.get("/api/v1/jump-clients", params=query).json()  # type: ignore[attr-defined]
        if online["total"] >= count:
            return time.monotonic() - started
        time.sleep(1.0)
    raise TimeoutError(f"the fleet was not online within {timeout:.0f} s")


def progress(api: object, deadline: float) -> dict[str, Any]:
    """The fleet's progress; asked again while the install switches workers, until
    `deadline` (`time.monotonic()`), when a site that does not answer ends the run."""
    while time.monotonic() < deadline:
        try:
            answer = api.get("/api/v1/jump-clients/fleet")  # type: ignore[attr-defined]
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if answer.status_code == 200:
            return dict(answer.json())
        time.sleep(0.2)
    raise SystemExit("the site did not answer the fleet's progress before --timeout")


def report(api: object, args: argparse.Namespace, size: int, count: int) -> None:
    first: float | None = None
    peak, last = 0, {}
    deadline = time.monotonic() + args.timeout
    said = 0.0
    while time.monotonic() < deadline:
        last = progress(api, deadline)
        if last["site_version"] != "1.1.0":  # the install is still under way
            time.sleep(0.2)
            continue
        peak = max(peak, last["upgrading"])
        if first is None and (last["upgrading"] or last["upgraded"]):
            first = time.monotonic()
        if first is not None and time.monotonic() - said >= 5.0:
            said = time.monotonic()
            shown = ("upgraded", "upgrading", "pending", "offline", "failed")
            print(f"{said - first:6.1f} s", *(f"{k} {last.get(k)}" for k in shown), flush=True)
        if last["upgraded"] >= count:
            break
        time.sleep(0.5)
    makespan = time.monotonic() - (first or time.monotonic())
    bound = count * size / (args.bandwidth * 1024 * 1024)
    print(json.dumps(last))
    print(
        f"clients {count:,}, build {size:,} bytes, cap {args.cap}, bandwidth {args.bandwidth} "
        f"MiB/s, connection rate {args.connection_rate}/s"
    )
    print(f"makespan {makespan:.1f} s; bandwidth bound {bound:.1f} s; ratio {makespan / bound:.2f}")
    print(f"peak upgrading at once {peak} (cap {args.cap}); left behind {count - last['upgraded']}")


if __name__ == "__main__":
    main()
