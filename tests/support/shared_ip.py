"""Two real appliances in network namespaces with a shared IP address, and a client that
polls the address during a role swap: for the shared-IP test and its benchmark."""

from __future__ import annotations

import hashlib
import itertools
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.integration._update_env import (
    UpdateService,
    Vendor,
    service_certificate,
    stop,
    wait_ready,
)
from tests.integration.test_api import bearer, create_client, get_token
from tests.support import netns
from tests.support.appliance import (
    RunningAppliance,
    appliance_command,
    test_environment,
    wait_healthy,
)
from tests.support.releases import project_wheel

SITE = "site.shared-ip.test"
KEY = "the shared address pair's key"
PORT = 8443
SHARED = "198.18.0.10"
AUTO_TAKEOVER_SECONDS = 3


@dataclass
class Node:
    host: netns.Host
    appliance: RunningAppliance
    credentials: dict[str, str]

    def call(self, client: netns.Host, method: str, path: str, **kwargs: Any) -> httpx.Response:
        def ask() -> httpx.Response:
            token = get_token(self.appliance, self.credentials).json()["access_token"]
            with self.appliance.client(headers=bearer(token), timeout=120) as api:
                return api.request(method, path, **kwargs)

        return client.run(ask)


@contextmanager
def appliance_in(
    host: netns.Host, client: netns.Host, tmp: Path, extra_env: dict[str, str] | None = None
) -> Iterator[RunningAppliance]:
    data, log_path = tmp / f"data-{host.address}", tmp / f"appliance-{host.address}.log"
    env = test_environment(
        {
            "BASTION_GATEWAY_LISTEN": "off",
            "BASTION_FAILOVER_SHARED_IPS": f'["{SHARED}/{netns.PREFIX}@eth0"]',
            "BASTION_FAILOVER_CHECK_SECONDS": "1",
            "BASTION_FAILOVER_FIRST_SYNC_SECONDS": "3600",
            "BASTION_FAILOVER_AUTO_TAKEOVER_SECONDS": str(AUTO_TAKEOVER_SECONDS),
            "BASTION_FAILOVER_TEST_ADDRESSES": f'["{SHARED}:{PORT}"]',
            **(extra_env or {}),
        }
    )
    command = appliance_command(data, [f"0.0.0.0:{PORT}"], ["--hostname", SITE])
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            host.command(*command), stdout=log, stderr=subprocess.STDOUT, env=env
        )
    appliance = RunningAppliance(
        host.address, PORT, data, log_path, process, env, verify_hostname=False
    )
    try:
        client.run(wait_healthy, appliance)
        yield appliance
    finally:
        appliance.stop(signal.SIGTERM)
    appliance.served_off_the_loop()


@contextmanager
def shared_ip_pair(tmp: Path) -> Iterator[tuple[Node, Node, netns.Host]]:
    """A primary (198.18.0.1, holding the shared address) and its synced backup
    (198.18.0.2), and the client host (198.18.0.3)."""
    with netns.network("a", "b", "client") as hosts, pair_on(hosts, tmp) as made:
        yield made


@contextmanager
def pair_on(
    hosts: dict[str, netns.Host],
    tmp: Path,
    extra_env: dict[str, str] | None = None,
    before_pairing: Callable[[RunningAppliance], None] | None = None,
) -> Iterator[tuple[Node, Node, netns.Host]]:
    """On hosts "a", "b" and "client": the pair established from "a" and synced
    (`before_pairing` is done on each appliance once it serves)."""
    with (
        appliance_in(hosts["a"], hosts["client"], tmp, extra_env) as first,
        appliance_in(hosts["b"], hosts["client"], tmp, extra_env) as second,
    ):
        for appliance, other in ((first, second), (second, first)):
            # a backup restarted after a sync serves the site certificate it brought
            appliance.trust = [other.ca_file]
            if before_pairing is not None:
                before_pairing(appliance)
        client = hosts["client"]
        primary = Node(hosts["a"], first, create_client(first, "swap"))
        backup = Node(hosts["b"], second, create_client(second, "swap"))
        for node in (primary, backup):
            set_key = node.call(client, "PUT", "/api/v1/failover/key", json={"key": KEY})
            assert set_key.status_code == 204
        body = {
            "backup_host": backup.host.address,
            "backup_port": PORT,
            "reverse_host": primary.host.address,
            "reverse_port": PORT,
        }
        answer = primary.call(client, "POST", "/api/v1/failover/establish", json=body)
        assert answer.status_code == 200, answer.text
        assert primary.call(client, "POST", "/api/v1/failover/sync").status_code == 200
        backup.credentials = primary.credentials  # the backup holds the primary's clients now
        yield primary, backup, client


def fingerprint(response: httpx.Response) -> str:
    """SHA-256 of the certificate served on `response`'s connection."""
    ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
    return hashlib.sha256(ssl_object.getpeercert(True)).hexdigest()


def tls_trusting(*appliances: RunningAppliance) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for appliance in appliances:
        context.load_verify_locations(cafile=str(appliance.ca_file))
    context.check_hostname = False  # the shared address is in neither certificate
    return context


def holder(address: str) -> str:
    """The link-layer address this thread's network namespace sends `address`'s packets
    to: which machine holds it (both appliances serve the same site certificate once a
    swap is over, so the certificate does not tell them apart)."""
    for line in Path("/proc/thread-self/net/arp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == address:
            return fields[3]
    return ""


def poll(url: str, context: ssl.SSLContext, stop: threading.Event) -> list[tuple[float, str]]:
    """Every 10 ms: when an answer came, and from which machine (`holder`); "" when the
    client's entry for the address changed while the answer came, so that the answer
    cannot be told to be either machine's (an ARP packet from either may arrive at any
    moment of a swap)."""
    answers: list[tuple[float, str]] = []
    timeout = httpx.Timeout(0.5)
    host = httpx.URL(url).host
    with httpx.Client(verify=context, timeout=timeout) as client:
        while not stop.is_set():
            try:
                before = holder(host)
                with client.stream("GET", url) as response:
                    after = holder(host)
                    response.read()
                if response.status_code == 200:
                    answers.append((time.monotonic(), after if after == before else ""))
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
    return answers


def held(node: Node, client: netns.Host) -> list[str]:
    return list(node.call(client, "GET", "/check_health").json()["enabled_shared_ips"])


def swap_while_polling(
    primary: Node, backup: Node, client: netns.Host
) -> tuple[list[tuple[float, str]], float]:
    """Become Primary on the backup while the shared address is polled; the answers and
    when the swap's request returned."""
    poller = netns.Host(client.namespace, client.address)
    stop = threading.Event()
    context = tls_trusting(primary.appliance, backup.appliance)
    try:
        url = f"https://{SHARED}:{PORT}/check_health"
        polling = poller.submit(poll, url, context, stop)
        time.sleep(1.5)
        answer = backup.call(client, "POST", "/api/v1/failover/become-primary", json={})
        assert answer.status_code == 200, answer.text
        swapped = time.monotonic()
        time.sleep(2.0)
        stop.set()
        return polling.result(), swapped
    finally:
        poller.close()


def gone_while_polling(
    primary: Node, backup: Node, client: netns.Host
) -> tuple[list[tuple[float, str]], float]:
    """The primary's machine goes away (its appliance killed, its link down) while the
    shared address is polled, until the backup took over by itself; the answers and when
    the primary went."""
    poller = netns.Host(client.namespace, client.address)
    stop = threading.Event()
    context = tls_trusting(primary.appliance, backup.appliance)
    try:
        url = f"https://{SHARED}:{PORT}/check_health"
        polling = poller.submit(poll, url, context, stop)
        time.sleep(1.5)
        primary.appliance.stop(signal.SIGKILL)
        subprocess.run(
            ["ip", "-n", primary.host.namespace, "link", "set", "eth0", "down"], check=True
        )
        went = time.monotonic()
        deadline = went + 60
        while backup.call(client, "GET", "/check_health").json()["failover_role"] != "primary":
            assert time.monotonic() < deadline, "the backup did not take over by itself"
            time.sleep(0.2)
        time.sleep(1.0)
        stop.set()
        return polling.result(), went
    finally:
        poller.close()


def longest_gap(answers: list[tuple[float, str]]) -> float:
    times = [at for at, _ in answers]
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


SERVICE_PORT = 9443


@contextmanager
def update_service_on(vendor: Vendor, host: netns.Host) -> Iterator[UpdateService]:
    """`update-service serve` inside `host`'s namespace, over HTTPS with a certificate of
    a test CA of its own (as `service` runs it on a loopback address)."""
    ca_file, cert_file, key_file = service_certificate(vendor.root / "tls-netns", host.address)
    command = [sys.executable, "-m", "bastion.update_service.cli", "update-service", "serve"]
    command += ["--data", str(vendor.data), "--keys", str(vendor.keys)]
    command += ["--listen", f"{host.address}:{SERVICE_PORT}"]
    command += ["--certfile", str(cert_file), "--keyfile", str(key_file)]
    process = subprocess.Popen(host.command(*command), stderr=subprocess.PIPE)
    running = UpdateService(f"https://{host.address}:{SERVICE_PORT}", ca_file)
    try:
        host.run(wait_ready, running, process)
        yield running
    finally:
        stop(process)


def upgrade_while_polling(
    primary: Node, backup: Node, client: netns.Host, body: dict[str, Any]
) -> tuple[list[tuple[float, str]], dict[str, Any] | None]:
    """The pair's upgrade (`body` as the API takes it) started on the primary while the
    shared address is polled, until it ends; the answers and the runbook's report."""
    poller = netns.Host(client.namespace, client.address)
    stop = threading.Event()
    context = tls_trusting(primary.appliance, backup.appliance)
    last: dict[str, Any] | None = None
    try:
        polling = poller.submit(poll, f"https://{SHARED}:{PORT}/check_health", context, stop)
        time.sleep(1.0)
        started = primary.call(client, "POST", "/api/v1/failover/upgrade", json=body)
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            last = _report(primary, client) or last
            if last is not None and last["state"] != "running":
                break
            time.sleep(0.5)
        time.sleep(1.0)
        stop.set()
        return polling.result(), last
    finally:
        poller.close()


def _report(node: Node, client: netns.Host) -> dict[str, Any] | None:
    try:
        answer = node.call(client, "GET", "/api/v1/failover/upgrade")
    except (httpx.HTTPError, KeyError, ValueError):  # restarting for its own install
        return None
    return dict(answer.json()) if answer.status_code == 200 else None


@contextmanager
def upgradable_pair(tmp: Path, versions: Sequence[str]) -> Iterator[tuple[Node, Node, netns.Host]]:
    """`shared_ip_pair` whose appliances are told of an update service (on a fourth
    host, 198.18.0.4) offering site releases of this source at `versions`."""
    vendor = Vendor.for_site(tmp / "vendor", SITE)
    for version in versions:
        wheel = project_wheel(version, tmp / "wheels")
        vendor.publish_wheel("site", version, wheel, "--site", SITE)
    root_file = tmp / "root.json"
    root_file.write_bytes(vendor.trusted_root())
    with (
        netns.network("a", "b", "client", "vendor") as hosts,
        update_service_on(vendor, hosts["vendor"]) as running,
    ):
        env = {
            **running.env(),
            "BASTION_UPDATE_SITE": SITE,
            "BASTION_UPDATE_TRUSTED_ROOT": str(root_file),
            "BASTION_INSTALL_PROBATION_SECONDS": "2",
        }

        def enrol(appliance: RunningAppliance) -> None:
            vendor.enrol(SITE, appliance.data_dir)

        with pair_on(hosts, tmp, env, before_pairing=enrol) as made:
            yield made
