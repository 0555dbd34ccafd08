"""The console's self-upgrade against a site of its own making (real TLS, real sockets):
a build that is what the site announced is installed and made current; one whose digest,
size or version is not is refused, and the console goes on as it was."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import ssl
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from bastion.access_console import saved
from bastion.access_console.client import ConsoleClient
from bastion.access_console.errors import ConsoleError, MisunderstoodError
from bastion.access_console.rules import CurrentBuild
from bastion.access_console.upgrading import ConsoleUpgradeError, current, upgrade
from bastion.entrypoints.cli import app
from bastion.platform import build as this_build
from tests.support.pki import TestCa

TOKEN = "bearer-2"


def wheel_of(version: str, dist_version: str | None = None) -> bytes:
    """A small `bastion` wheel: one module, its METADATA, its RECORD."""
    info = f"bastion-{dist_version or version}.dist-info"
    files = {
        "bastion/__init__.py": b'"""bastion"""\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: bastion\nVersion: {version}\n".encode(),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for name, data in files.items():
            out.writestr(name, data)
        out.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return buffer.getvalue()


class BuildSite(BaseHTTPRequestHandler):
    """The console API's about, jump items and build, with a build chosen by the test."""

    version: ClassVar[str] = "1.2.3"
    wheel: ClassVar[bytes] = b""
    announced: ClassVar[dict[str, Any] | None] = None
    asked: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.asked.append(self.path)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._json(401, {"error": {"message": "Sign in first."}})
        elif self.path == "/api/v1/console/about":
            self._json(200, {"site": "site.test", "site_version": self.version, "site_build": "b"})
        elif self.path == "/api/v1/console/jump-items":
            self._json(200, [])
        elif self.path == "/api/v1/console/build" and self.announced is None:
            self._json(404, {"error": {"message": "The site has no console build to serve."}})
        elif self.path == "/api/v1/console/build":
            self._json(200, self.announced)
        elif self.path.startswith("/api/v1/console/build/"):
            self._send(200, "application/octet-stream", self.wheel)

    def _json(self, status: int, body: object) -> None:
        self._send(status, "application/json", json.dumps(body).encode())

    def _send(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def offer(wheel: bytes, version: str = "1.2.3", **changed: Any) -> None:
    """The site runs `version` and serves `wheel`; `changed` alters what it announces."""
    sha256 = hashlib.sha256(wheel).hexdigest()
    BuildSite.version, BuildSite.wheel = version, wheel
    BuildSite.announced = {
        "version": version,
        "sha256": sha256,
        "size": len(wheel),
        "path": f"/api/v1/console/build/{sha256}",
        **changed,
    }
    BuildSite.asked = []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The site's address and the CA file that trusts it."""
    directory = tmp_path_factory.mktemp("build-site")
    ca = TestCa()
    issued = ca.issue(["127.0.0.1"])
    (directory / "ca.pem").write_bytes(ca.pem())
    (directory / "site.pem").write_bytes(issued.certificate_pem() + issued.key_pem())
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(directory / "site.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), BuildSite)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", directory / "ca.pem"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def client(site: tuple[str, Path]) -> Iterator[ConsoleClient]:
    with ConsoleClient(site[0], site[1], token=TOKEN) as made:
        yield made


def previous(where: Path) -> CurrentBuild:
    """A build installed before, current until something better is checked."""
    lib = where / "builds" / "1.1.0" / "lib"
    lib.mkdir(parents=True)
    body = {"version": "1.1.0", "lib": str(lib)}
    (where / "current.json").write_text(json.dumps(body))
    return CurrentBuild(**body)


def test_a_build_as_announced_is_installed_and_made_current(
    site: tuple[str, Path], tmp_path: Path
) -> None:
    previous(tmp_path)
    offer(wheel_of("1.2.3"))
    with client(site) as console:
        made = upgrade(console, "1.2.3", tmp_path)
    lib = tmp_path / "builds" / "1.2.3" / "lib"
    assert made == CurrentBuild("1.2.3", str(lib)) == current(tmp_path)
    assert (lib / "bastion" / "__init__.py").is_file()
    assert sorted(p.name for p in (tmp_path / "builds").iterdir()) == ["1.2.3"]


@pytest.mark.parametrize(
    ("wheel", "changed", "error", "words"),
    [
        (wheel_of("1.2.3"), {"sha256": "0" * 64}, ConsoleUpgradeError, "not 000000"),
        (wheel_of("1.2.3"), {"size": 10}, MisunderstoodError, "more than the build's 10 bytes"),
        (wheel_of("1.2.3", "1.2.4"), {}, ConsoleUpgradeError, "not the bastion package of"),
        (b"not a zip file", {}, ConsoleUpgradeError, "does not install"),
        (wheel_of("1.2.3"), {"version": "1.2.4"}, ConsoleUpgradeError, "a build of 1.2.4"),
        (wheel_of("1.2.3"), {"path": "/elsewhere"}, MisunderstoodError, "not its own"),
    ],
)
def test_a_build_not_as_announced_is_refused_and_the_current_one_stays(
    site: tuple[str, Path],
    tmp_path: Path,
    wheel: bytes,
    changed: dict[str, Any],
    error: type[ConsoleError],
    words: str,
) -> None:
    before = previous(tmp_path)
    offer(wheel, **changed)
    with client(site) as console, pytest.raises(error, match=words):
        upgrade(console, "1.2.3", tmp_path)
    assert current(tmp_path) == before
    assert sorted(p.name for p in (tmp_path / "builds").iterdir()) == ["1.1.0"]


def cli(home: Path, *args: str, **env: str) -> tuple[int, str]:
    environ = {
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "BASTION_CONSOLE_BUILD": "",
        "BASTION_CONSOLE_UPGRADED_FROM": "",
        "COLUMNS": "200",
        **env,
    }
    result = CliRunner().invoke(app, ["console", *args], env=environ)
    return result.exit_code, result.output


def signed_in(site: tuple[str, Path], home: Path) -> Path:
    kept = saved.SavedSignIn(site[0], TOKEN, "rep", "2026-12-02T20:00:00+00:00", str(site[1]))
    saved.save(kept, home / "config" / "bastion" / saved.FILE)
    return home


def test_a_refused_build_leaves_the_command_running_on_the_old_console(
    site: tuple[str, Path], tmp_path: Path
) -> None:
    offer(wheel_of("1.2.3"), sha256="1" * 64)
    code, output = cli(signed_in(site, tmp_path), "list")
    assert code == 0, output
    mine = this_build.site_version()
    assert "could not upgrade itself to the site's 1.2.3 (the build's SHA-256 is" in output
    assert f"it goes on as {mine}." in output and "No Jump Items." in output
    assert not (tmp_path / "data" / "bastion" / "console" / "current.json").exists()
    offer(wheel_of("1.2.3"))
    BuildSite.announced = None
    code, output = cli(tmp_path, "list")
    assert code == 0 and "The site has no console build to serve." in output


def test_an_older_site_is_refused_and_an_upgraded_console_does_not_upgrade_again(
    site: tuple[str, Path], tmp_path: Path
) -> None:
    signed_in(site, tmp_path)
    offer(wheel_of("0.9.0"), version="0.9.0")
    code, output = cli(tmp_path, "list")
    mine = this_build.site_version()
    assert code == 2 and f"The site runs 0.9.0, older than this console ({mine})" in output
    assert f"installed ahead of the site's upgrade to {mine} works once the site runs it" in output
    code, output = cli(tmp_path, "about")
    assert code == 0 and "older than this console" in output
    offer(wheel_of("1.2.3"))
    code, output = cli(tmp_path, "list", BASTION_CONSOLE_UPGRADED_FROM="0.1.0")
    assert code == 0, output
    assert f"The site runs 1.2.3; its build is {mine}. Going on as is." in output
    assert "No Jump Items." in output
    assert not [path for path in BuildSite.asked if "/build" in path]
