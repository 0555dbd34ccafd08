"""Cost of a TUF update check and of downloading and verifying a large release.

Starts a real update-service process on 127.0.0.52 over a site repository of
1, 100 and 10,000 releases and times an appliance's first check (full
metadata download and verification) and a repeat check (timestamp only).
Then downloads and verifies a 200 MB release and compares with `sha256sum`
of the same file in the same run. Prints the figures.

    uv run python bench/bench_updates.py [--size-mb 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bastion.releases.packages import PackageInfo
from bastion.releases.versions import ReleaseKind, parse_version
from bastion.update_service.keys import generate_keys
from bastion.update_service.store import ReleaseRow, WaveOpeningRow
from bastion.update_service.tuf_repo import RepoConfig, utcnow
from bastion.update_service.vendor import Vendor, init_repository
from bastion.updates.client import UpdateClient

HOST = "127.0.0.52"
SITE = "bench.example"
INSTALLED = {ReleaseKind.BASE: parse_version("0.1")}


def make_vendor(root: Path) -> Vendor:
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


def start_service(vendor: Vendor) -> tuple[subprocess.Popen[bytes], str]:
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
    process = subprocess.Popen(command)
    url = f"http://{HOST}:{port}"
    for _ in range(400):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.terminate()
    raise SystemExit("update service did not start")


def time_checks(root: Path, vendor: Vendor, url: str, label: str) -> None:
    client = UpdateClient(
        root / f"appliance-{label}",
        SITE,
        "bench",
        (vendor.data_dir / "root" / "1.root.json").read_bytes(),
        url,
    )
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


def time_download(root: Path, vendor: Vendor, url: str, size_mb: int) -> None:
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
    client = UpdateClient(
        root / "appliance-big",
        SITE,
        "bench",
        (vendor.data_dir / "root" / "1.root.json").read_bytes(),
        url,
    )
    big = next(s for s in client.check(INSTALLED) if s.release.version == parse_version("99"))
    started = time.perf_counter()
    client.download(big)
    download = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(["sha256sum", str(blob)], check=True, capture_output=True)
    hashing = time.perf_counter() - started
    print(
        f"download+verify {size_mb} MB: {download:6.2f} s ({size_mb / download:7.1f} MB/s); "
        f"sha256sum alone {hashing:5.2f} s ({size_mb / hashing:7.1f} MB/s); "
        f"ratio {download / hashing:4.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-updates-"))
    try:
        vendor = make_vendor(root)
        blob = write_blob(vendor.packages_dir, b"bench package\n")
        process, url = start_service(vendor)
        try:
            done = 0
            for total in (1, 100, 10_000):
                add_releases(vendor, blob, total - done, done)
                done = total
                time_checks(root, vendor, url, str(total))
            time_download(root, vendor, url, args.size_mb)
        finally:
            process.terminate()
            process.wait(timeout=10)
            vendor.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
