"""A real DNS server (Debian `bind9`'s `named`) for the DNS swing's tests: started in the
foreground on 127.0.0.1 and a free high port, with a temporary directory, one primary
zone and a TSIG key allowed to update it, until the block ends. (named listens only on
the addresses of the machine's interfaces: the other 127.x addresses, which the loopback
interface answers without holding them, cannot be given.)

The key is also written as a BIND key file (`key.conf`), as an administrator would hand
it to the appliance."""

from __future__ import annotations

import base64
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.appliance import free_port

NAMED = "named"
KEY_NAME = "bastion-swing"
ALGORITHM = "hmac-sha256"


@dataclass(frozen=True)
class NameServer:
    host: str
    port: int
    zone: str
    key_file: Path
    """A BIND key file holding the key that may update the zone."""
    secret: str
    log: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def available() -> bool:
    return shutil.which(NAMED) is not None


def key_clause(name: str, secret: str) -> str:
    return f'key "{name}" {{\n\talgorithm {ALGORITHM};\n\tsecret "{secret}";\n}};\n'


def _zone_file(zone: str, records: dict[str, str]) -> str:
    lines = [
        f"$ORIGIN {zone}.",
        "$TTL 300",
        f"@ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 30",
        f"@ IN NS ns.{zone}.",
        "ns IN A 127.0.0.1",
    ]
    lines += [f"{name} IN A {address}" for name, address in records.items()]
    return "\n".join(lines) + "\n"


def _config(tmp: Path, host: str, port: int, zone: str) -> str:
    return (
        "options {\n"
        f'\tdirectory "{tmp}";\n'
        f'\tpid-file "{tmp}/named.pid";\n'
        f'\tsession-keyfile "{tmp}/session.key";\n'
        f'\tmanaged-keys-directory "{tmp}";\n'
        f"\tlisten-on port {port} {{ {host}; }};\n"
        "\tlisten-on-v6 { none; };\n"
        "\trecursion no;\n\tnotify no;\n\tdnssec-validation no;\n"
        "\tallow-query { any; };\n"
        "};\n"
        "controls { };\n"
        f'include "{tmp}/key.conf";\n'
        f'zone "{zone}" {{\n\ttype primary;\n\tfile "{tmp}/{zone}.zone";\n'
        f'\tallow-update {{ key "{KEY_NAME}"; }};\n}};\n'
    )


@contextmanager
def name_server(
    tmp: Path, host: str = "127.0.0.1", zone: str = "swing.test", **records: str
) -> Iterator[NameServer]:
    """named serving `zone` (with A `records`, name to address) on `host`, until the
    block ends."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    key_file = tmp / "key.conf"
    key_file.write_text(key_clause(KEY_NAME, secret))
    (tmp / f"{zone}.zone").write_text(_zone_file(zone, records))
    config = tmp / "named.conf"
    config.write_text(_config(tmp, host, port, zone))
    log = tmp / "named.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [NAMED, "-g", "-n", "1", "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_listening(host, port, process, log)
        yield NameServer(host, port, zone, key_file, secret, log)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_listening(host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"named exited: {log.read_text(errors='replace')}")
        if b" running\n" in log.read_bytes():
            try:
                with socket.create_connection((host, port), timeout=1):
                    return
            except OSError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"named did not serve on {host}:{port}: {log.read_text()}")
