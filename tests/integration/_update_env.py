"""A real vendor repository and a real update-service process, over HTTPS, for update tests.

The service serves a certificate of its own test CA (`tests/support/pki.py`), as a
vendor's would of theirs: an appliance reaches it only when it trusts that CA (the
update service CA setting, or `BASTION_UPDATE_SERVICE_CA_FILE`).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from bastion.releases.download_key import generate_appliance_key
from bastion.update_service.cli import release_app
from tests.support.pki import TestCa


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file and link under ``root`` (links as their target), to compare before/after."""
    if not root.exists():
        return {}
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = os.readlink(path).encode()
        elif path.is_file():
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


@dataclass
class Vendor:
    root: Path
    runner: CliRunner = field(default_factory=CliRunner)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    def run(self, *args: str, ok: bool = True) -> str:
        result = self.runner.invoke(release_app, list(args))
        if ok and result.exit_code != 0:
            raise AssertionError(f"release {args[0]} failed: {result.output}")
        return result.output

    def admin(self, command: str, *args: str, ok: bool = True) -> str:
        return self.run(command, "--data", str(self.data), "--keys", str(self.keys), *args, ok=ok)

    def init(self, *expiry: str) -> None:
        self.run("keygen", "--keys", str(self.keys), "--root-keys", "2")
        options = [item for e in expiry for item in ("--expiry", e)]
        self.admin("init-repo", "--root-threshold", "2", *options)

    def build(self, kind: str, version: str, *extra: str, payload: bytes = b"") -> Path:
        src = self.root / "src" / f"{kind}-{version}"
        src.mkdir(parents=True, exist_ok=True)
        (src / "content.txt").write_bytes(payload or f"{kind} {version}\n".encode())
        out = self.root / "packages"
        args = ["build", "--kind", kind, "--version", version, "--out", str(out), *extra, str(src)]
        return Path(self.run(*args).strip().splitlines()[-1])

    def release(self, kind: str, version: str, *extra: str, payload: bytes = b"") -> Path:
        package = self.build(kind, version, *extra, payload=payload)
        self.admin("publish", str(package))
        return package

    @classmethod
    def for_site(cls, root: Path, site: str, customer: str = "acme") -> Vendor:
        """A new repository (root threshold 2) with one customer and its site."""
        vendor = cls(root)
        vendor.init()
        vendor.customer(customer)
        vendor.site(site, customer)
        return vendor

    def publish_wheel(self, kind: str, version: str, wheel: Path, *extra: str) -> None:
        """Build a release whose payload is `wheel`, publish it and open wave 1 for it."""
        args = ["--kind", kind, "--version", version, *extra]
        built = self.run("build", *args, "--out", str(self.root / "packages"), str(wheel))
        self.admin("publish", built.strip().splitlines()[-1])
        site = extra[extra.index("--site") + 1] if "--site" in extra else None
        self.admin("open-wave", f"{kind}:{version}" + (f"@{site}" if site else ""), "--wave", "1")

    def enrol(self, site: str, data_dir: Path, env: dict[str, str] | None = None) -> None:
        """`bastion appliance update-key --json` on the appliance, then enroll-appliance."""
        from bastion.entrypoints.cli import app as bastion_command

        args = ["update-key", "--json", "--data", str(data_dir)]
        result = self.runner.invoke(bastion_command, ["appliance", *args], env=env)
        assert result.exit_code == 0, result.output
        found = json.loads(result.output)
        self.admin(
            "enroll-appliance",
            *("--site", site, "--appliance-id", found["appliance_id"]),
            *("--public-key", found["public_key"]),
        )

    def customer(self, name: str, contract_end: str = "2099-12-31") -> None:
        self.admin(
            "add-customer", name, "--email", f"ops@{name}.example", "--contract-end", contract_end
        )

    def site(self, name: str, customer: str, wave: int = 1) -> None:
        self.admin("add-site", name, "--customer", customer, "--wave", str(wave))

    def appliance(self, site: str, appliance_id: str, key_file: Path) -> Path:
        public = generate_appliance_key(key_file)
        args = ["--site", site, "--appliance-id", appliance_id, "--public-key", public]
        self.admin("enroll-appliance", *args)
        return key_file

    def site_dir(self, site: str) -> Path:
        return self.data / "sites" / site

    def trusted_root(self) -> bytes:
        return (self.data / "root" / "1.root.json").read_bytes()


@dataclass(frozen=True)
class UpdateService:
    """A running update service: its HTTPS URL and the test CA its certificate chains to."""

    url: str
    ca_file: Path

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """A request from "any machine with access" that trusts the service's CA."""
        kwargs.setdefault("timeout", 30)
        return httpx.post(f"{self.url}{path}", verify=self.tls(), **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 30)
        return httpx.get(f"{self.url}{path}", verify=self.tls(), **kwargs)

    def env(self) -> dict[str, str]:
        """The appliance settings that name this service and trust its CA."""
        return {
            "BASTION_UPDATE_SERVICE_URL": self.url,
            "BASTION_UPDATE_SERVICE_CA_FILE": str(self.ca_file),
        }


def service_certificate(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """A test CA and a certificate it issued for `host`: (CA file, certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = TestCa("Bastion test update service CA")
    issued = ca.issue([host])
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca_file.write_bytes(ca.pem())
    cert_file.write_bytes(issued.certificate_pem())
    key_file.write_bytes(issued.key_pem())
    return ca_file, cert_file, key_file


@contextmanager
def service(
    vendor: Vendor, host: str, env: dict[str, str] | None = None
) -> Iterator[UpdateService]:
    """Run ``update-service serve`` over HTTPS as its own process, with a certificate of a
    test CA of its own."""
    port = free_port(host)
    ca_file, cert_file, key_file = service_certificate(vendor.root / f"tls-{host}-{port}", host)
    command = [sys.executable, "-m", "bastion.update_service.cli", "update-service", "serve"]
    command += ["--data", str(vendor.data), "--keys", str(vendor.keys)]
    command += ["--listen", f"{host}:{port}"]
    command += ["--certfile", str(cert_file), "--keyfile", str(key_file)]
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stderr=subprocess.PIPE)
    running = UpdateService(f"https://{host}:{port}", ca_file)
    try:
        wait_ready(running, process)
        yield running
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the service; killed if it has not ended within 10 seconds."""
    process.terminate()
    try:
        process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("the update service did not stop within 10 s of SIGTERM") from None


START_TIMEOUT = 60.0
"""Seconds for the service process to answer; Python's start-up alone takes many on a
loaded machine."""


def wait_ready(running: UpdateService, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"update service exited: {process.communicate()[1].decode()}")
        try:
            if running.get("/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"update service did not start in {START_TIMEOUT:.0f} s")
