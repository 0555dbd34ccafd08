"""Cost of a TUF update check and of downloading and verifying a large release.

Starts a real update-service process on 127.0.0.52, over HTTPS with a certificate of
a test CA (as a vendor's service is reached), over a site repository of 1, 100 and
10,000 releases and times an appliance's first check (full metadata download and
verification) and a repeat check (timestamp only). Then, from a second repository
holding only a 200 MB release (so that its metadata costs nothing), downloads and
verifies it `--rounds` times, each into an appliance that has checked already, and
after each times `sha256sum` of the same stored file, so both run under the same load;
over HTTPS and, from a third service process, over plain HTTP. Prints the figures and
the median ratio (goal: download and verify <= 2 x sha256sum).

    uv run python bench/bench_updates.py [--size-mb 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bastion.releases.packages import PackageInfo
from bastion.releases.versions import ReleaseKind, parse_version
from bastion.update_service.keys import generate_keys
from bastion.update_service.store import ReleaseRow, WaveOpeningRow
from bastion.update_service.tuf_repo import RepoConfig, utcnow
from bastion.update_service.vendor import Vendor, init_repository
from bastion.updates.client import UpdateClient
from tests.integration._update_env import service_certificate

HOST = "127.0.0.52"
SITE = "bench.example"
INSTALLED = {ReleaseKind.BASE: parse_version("0.1")}


def make_vendor(root: Path) -> Vendor:
    """A repository with the bench site in wave 1 of a customer under contract."""
    keys = root / "keys"
    generate_keys(keys, 2)
    init_repository(root / "data", keys, RepoConfig(root_threshold=2))
    vendor = Vendor(root / "data", keys)
    vendor.add_customer("bench", "ops@bench.example", utcnow().date().replace(year=2099))
    vendor.add_site(SITE, "bench", 1)
    return vendor


def add_releases(vendor: Vendor, blob: Path, count: int, start: int = 0) -> list[str]:
    """Record ``count`` base releases sharing one package file; open them to wave 1."""
    digest, length = blob.name, blob.stat().st_size
    specs = []
    with vendor.session() as s:
        for i in range(start, start + count):
            info = PackageInfo(ReleaseKind.BASE, parse_version(f"1.{i // 1000}.{i % 1000}"))
            row = ReleaseRow(
                spec=info.spec,
                kind="base",
                version=str(info.version),
                site=None,
                target_path=info.target_path,
                sha256=digest,
                length=length,
                custom=info.to_custom(),
                published_at=utcnow(),
            )
            s.add(row)
            s.flush()
            s.add(WaveOpeningRow(release_id=row.id, wave=1, opens_on=utcnow().date()))
            specs.append(info.spec)
    vendor.sync_sites()
    return specs


def write_blob(packages: Path, data: bytes) -> Path:
    import hashlib

    packages.mkdir(parents=True, exist_ok=True)
    path = packages / hashlib.sha256(data).hexdigest()
    path.write_bytes(data)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_service(vendor: Vendor, tls: bool) -> tuple[subprocess.Popen[bytes], str, ssl.SSLContext]:
    """The update service as its own process, over HTTPS (`tls`) or plain HTTP."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bastion.update_service.cli",
        "update-service",
        "serve",
        "--data",
        str(vendor.data_dir),
        "--keys",
        str(vendor.keys_dir),
        "--listen",
        f"{HOST}:{port}",
    ]
    context = ssl.create_default_context()
    if tls:
        ca, cert, key = service_certificate(vendor.data_dir / f"tls-{port}", HOST)
        command += ["--certfile", str(cert), "--keyfile", str(key)]
        context = ssl.create_default_context(cafile=str(ca))
    process = subprocess.Popen(command)
    url = f"{'https' if tls else 'http'}://{HOST}:{port}"
    for _ in range(400):
        try:
            if httpx.get(url + "/healthz", timeout=1, verify=context).status_code == 200:
                return process, url, context
        except httpx.TransportError:
            time.sleep(0.05)
    process.terminate()
    raise SystemExit("update service did not start")


def client_of(data: Path, vendor: Vendor, url: str, context: ssl.SSLContext) -> UpdateClient:
    root = (vendor.data_dir / "root" / "1.root.json").read_bytes()
    return UpdateClient(data, SITE, "bench", root, url, tls=context)


def time_checks(root: Path, vendor: Vendor, url: str, context: ssl.SSLContext, label: str) -> None:
    client = client_of(root / f"appliance-{label}", vendor, url, context)
    started = time.perf_counter()
    found = client.check(INSTALLED)
    first = time.perf_counter() - started
    started = time.perf_counter()
    client.check(INSTALLED)
    again = time.perf_counter() - started
    size = (client.store.dir / "targets.json").stat().st_size
    print(
        f"check, {len(found):>6} releases: first {first * 1000:8.1f} ms, "
        f"repeat {again * 1000:7.1f} ms   (targets.json {size / 1024:,.0f} KiB)"
    )


def publish_big(vendor: Vendor, size_mb: int) -> Path:
    """A release of `size_mb` random MB, open to the bench site."""
    blob = write_blob(vendor.packages_dir, os.urandom(size_mb * 2**20))
    with vendor.session() as s:
        info = PackageInfo(ReleaseKind.BASE, parse_version("99"))
        row = ReleaseRow(
            spec=info.spec,
            kind="base",
            version="99",
            site=None,
            target_path=info.target_path,
            sha256=blob.name,
            length=blob.stat().st_size,
            custom=info.to_custom(),
            published_at=utcnow(),
        )
        s.add(row)
        s.flush()
        s.add(WaveOpeningRow(release_id=row.id, wave=1, opens_on=utcnow().date()))
    vendor.sync_sites()
    return blob


def time_download(
    root: Path, vendor: Vendor, url: str, context: ssl.SSLContext, label: str, rounds: int
) -> float:
    """Download and verify the big release `rounds` times, each into a fresh appliance, and
    `sha256sum` the stored file after each; print each pair, return the median ratio."""
    ratios = []
    for n in range(1, rounds + 1):
        data = root / f"appliance-{label}-{n}"
        client = client_of(data, vendor, url, context)
        big = next(s for s in client.check(INSTALLED) if s.release.version == parse_version("99"))
        client.check(INSTALLED)  # the metadata is current: the download fetches the package
        started = time.perf_counter()
        stored = client.download(big)
        download = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run(["sha256sum", str(stored)], check=True, capture_output=True)
        hashing = time.perf_counter() - started
        size_mb = big.target.length / 2**20
        ratios.append(download / hashing)
        print(
            f"download+verify {size_mb:.0f} MiB over {label} (round {n}): {download:6.2f} s "
            f"({size_mb / download:6.1f} MiB/s); sha256sum of the stored file {hashing:5.2f} s "
            f"({size_mb / hashing:6.1f} MiB/s); ratio {download / hashing:4.2f}x"
        )
        shutil.rmtree(data, ignore_errors=True)
    return statistics.median(ratios)


def time_all_checks(root: Path) -> None:
    vendor = make_vendor(root)
    blob = write_blob(vendor.packages_dir, b"bench package\n")
    service, url, context = start_service(vendor, tls=True)
    try:
        done = 0
        for total in (1, 100, 10_000):
            add_releases(vendor, blob, total - done, done)
            done = total
            time_checks(root, vendor, url, context, str(total))
    finally:
        service.terminate()
        service.wait(timeout=30)
        vendor.close()


def time_downloads(root: Path, size_mb: int, rounds: int) -> tuple[float, float]:
    """Median ratios over HTTPS and over HTTP."""
    vendor = make_vendor(root)
    publish_big(vendor, size_mb)
    secure, url, context = start_service(vendor, tls=True)
    plain, plain_url, plain_context = start_service(vendor, tls=False)
    try:
        over_tls = time_download(root, vendor, url, context, "HTTPS", rounds)
        over_http = time_download(root, vendor, plain_url, plain_context, "HTTP", rounds)
    finally:
        for process in (secure, plain):
            process.terminate()
            process.wait(timeout=30)
        vendor.close()
    return over_tls, over_http


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-updates-"))
    try:
        time_all_checks(root / "many")
        over_tls, over_http = time_downloads(root / "big", args.size_mb, args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"median ratio to sha256sum: {over_tls:.2f}x over HTTPS, {over_http:.2f}x over HTTP "
        f"(goal <= 2x: {'met' if over_tls <= 2 else 'MISSED'} over HTTPS)"
    )


if __name__ == "__main__":
    main()
