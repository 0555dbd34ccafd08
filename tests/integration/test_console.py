"""The access console against a site played here: HTTPS (a small threaded server) and the
terminal WebSocket (the `websockets` library's server), both on loopback over real TLS
with a certificate from a CA made here. The appliance's own endpoints are not used."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import ssl
import stat
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from typer.testing import CliRunner
from websockets.asyncio.server import ServerConnection, serve

from bastion.access_console import saved
from bastion.access_console.client import tls_context
from bastion.access_console.errors import ConsoleTrustError, MisunderstoodError
from bastion.access_console.protocol import Ended, Exited, Started, read_from_console, write
from bastion.access_console.terminal import Outcome, relay
from bastion.entrypoints.cli import app
from bastion.platform import build as this_build
from tests.support.asgi_tls import served
from tests.support.pki import TestCa

TOKEN = "K" * 43
ITEM = {
    "id": 7,
    "name": "web1",
    "hostname": "web1.example.org",
    "group": "Web",
    "tag": "",
    "mode": "active",
    "status": "upgrade_pending",
    "version": "0.9.0",
    "jumpable": False,
    "reason": "Upgrade Pending",
}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """The CA file a user would give, and the site's server context."""
    directory = tmp_path_factory.mktemp("console-pki")
    ca = TestCa()
    issued = ca.issue(["127.0.0.1", "localhost"])
    (directory / "ca.pem").write_bytes(ca.pem())
    (directory / "site.pem").write_bytes(issued.certificate_pem() + issued.key_pem())
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "site.pem")
    return directory / "ca.pem", server


# -- HTTPS -------------------------------------------------------------------------


class FakeSite(BaseHTTPRequestHandler):
    """The console API as access_console/protocol.py defines it, for one representative."""

    signed_in: ClassVar[set[str]] = set()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/api/v1/console/sign-in":
            if body != {"username": "rep", "password": "right"}:
                self._error(401, "The username or password is not right.")
                return
            self.signed_in.add("bearer-1")
            self._json(
                200,
                {
                    "token": "bearer-1",
                    "expires_at": "2026-12-02T20:00:00Z",
                    "username": "rep",
                    "display_name": "Rep",
                    "role": "representative",
                },
            )
        elif self.path == "/api/v1/console/sign-out" and self._authorized():
            self.signed_in.discard("bearer-1")
            self.send_response(204)
            self.end_headers()
        elif self.path == "/api/v1/console/sessions" and self._authorized():
            self._error(409, "web1 is Upgrade Pending; it is upgraded first, try again shortly.")

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path == "/api/v1/console/about":
            self._json(200, {"site": "site.test", "site_version": "1.2.3", "site_build": "b123"})
        elif self.path == "/api/v1/console/jump-items":
            self._json(200, [ITEM])
        elif self.path == "/api/v1/console/build":
            self._error(404, "This site has no console build to serve.")

    def _authorized(self) -> bool:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if token in self.signed_in:
            return True
        self._error(401, "Sign in first.")
        return False

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"type": "Error", "message": message}})

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def fake_site(server_tls: ssl.SSLContext) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSite)
    server.socket = server_tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def console(config: Path, *args: str, stdin: str = "") -> tuple[int, str]:
    env = {"XDG_CONFIG_HOME": str(config), "XDG_DATA_HOME": str(config), "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["console", *args], input=stdin, env=env)
    return result.exit_code, result.output


def test_sign_in_keeps_the_token_and_the_other_commands_use_it(
    certificates: tuple[Path, ssl.SSLContext], tmp_path: Path
) -> None:
    ca_file, server_tls = certificates
    with fake_site(server_tls) as site:
        sign_in = ["sign-in", "--site", site, "--username", "rep", "--password-stdin"]
        code, output = console(tmp_path, *sign_in, stdin="wrong\n")
        assert code == 2 and "not trusted" in output and "--ca-file" in output
        code, output = console(tmp_path, *sign_in, "--ca-file", str(ca_file), stdin="wrong\n")
        assert code == 2 and "The username or password is not right." in output
        code, output = console(tmp_path, *sign_in, "--ca-file", str(ca_file), stdin="right\n")
        assert code == 0, output
        assert output.startswith(f"Signed in to {site} as Rep (representative) until 2026-12-02")
        kept = tmp_path / "bastion" / "console.json"
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        assert json.loads(kept.read_text())["token"] == "bearer-1"
        assert saved.path({"XDG_CONFIG_HOME": str(tmp_path)}) == kept

        code, output = console(tmp_path, "about")
        assert code == 0 and output.splitlines()[1] == "site site.test 1.2.3 (build b123)"
        code, output = console(tmp_path, "list")
        assert code == 0 and "web1.example.org" in output and "no: Upgrade Pending" in output
        assert "could not upgrade itself to the site's 1.2.3 (This site has no console" in output
        code, output = console(tmp_path, "jump", "web1")
        assert code == 2 and "web1 is Upgrade Pending; it is upgraded first" in output

        assert console(tmp_path, "sign-out") == (0, f"Signed out of {site}.\n")
        assert not kept.exists()
        assert FakeSite.signed_in == set()


# -- the terminal ------------------------------------------------------------------


class TerminalSite:
    """The site's end of a terminal connection: checks the hello, echoes keystrokes."""

    def __init__(self, ending: str = "exit") -> None:
        self.ending = ending
        self.received: list[Any] = []
        self.proceed = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        hello = read_from_console(await ws.recv())
        assert hello.type == "console_hello" and hello.token == TOKEN
        await ws.send(write(Started()))
        async for frame in ws:
            if isinstance(frame, str):
                self.received.append(read_from_console(frame))
                if self.ending == "bad":
                    await self.proceed.wait()
                    await ws.send('{"type": "surprise"}')
                continue
            self.received.append(frame)
            await ws.send(frame)
            if b"\x04" in frame:
                await ws.send(
                    write(
                        Exited(code=3)
                        if self.ending == "exit"
                        else Ended(reason="the Jump Client went offline")
                    )
                )
                await ws.close()


@contextlib.asynccontextmanager
async def terminal_site(
    server_tls: ssl.SSLContext, ending: str = "exit"
) -> AsyncIterator[tuple[TerminalSite, str]]:
    site = TerminalSite(ending)
    async with serve(site.handler, "127.0.0.1", 0, ssl=server_tls) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield site, f"wss://127.0.0.1:{port}/api/v1/console/sessions/s1/terminal"


def piped(data: bytes) -> tuple[int, int, int]:
    """stdin reading `data` then its end, and a pipe for stdout (its two ends)."""
    reader, writer = os.pipe()
    os.write(writer, data)
    os.close(writer)
    out_reader, out_writer = os.pipe()
    return reader, out_reader, out_writer


def test_piped_input_is_relayed_and_the_remote_exit_code_returned(
    certificates: tuple[Path, ssl.SSLContext],
) -> None:
    ca_file, server_tls = certificates

    async def scenario() -> tuple[Outcome, list[Any]]:
        async with terminal_site(server_tls) as (_, url):
            stdin, output, stdout = piped(b"uname\nexit\n")
            try:
                outcome = await relay(url, tls_context(ca_file), TOKEN, stdin, stdout)
                os.close(stdout)
                return outcome, [os.read(output, 1000)]
            finally:
                os.close(stdin)
                os.close(output)

    outcome, written = asyncio.run(scenario())
    assert outcome == Outcome(3, "the remote shell exited with 3") and outcome.status == 3
    assert written == [b"uname\nexit\n\x04"]


def test_a_session_ended_by_the_site_has_no_exit_code(
    certificates: tuple[Path, ssl.SSLContext],
) -> None:
    ca_file, server_tls = certificates

    async def scenario() -> Outcome:
        async with terminal_site(server_tls, "ended") as (_, url):
            stdin, output, stdout = piped(b"")
            try:
                return await relay(url, tls_context(ca_file), TOKEN, stdin, stdout)
            finally:
                for fd in (stdin, output, stdout):
                    os.close(fd)

    outcome = asyncio.run(scenario())
    assert outcome == Outcome(None, "the Jump Client went offline") and outcome.status == 255


def test_on_a_terminal_a_resize_is_sent_and_the_terminal_is_put_back_after_an_error(
    certificates: tuple[Path, ssl.SSLContext],
) -> None:
    ca_file, server_tls = certificates
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 90, 0, 0))
    before = termios.tcgetattr(slave)

    async def scenario() -> list[Any]:
        async with terminal_site(server_tls, "bad") as (site, url):
            task = asyncio.create_task(relay(url, tls_context(ca_file), TOKEN, slave, master))
            async with asyncio.timeout(10):
                while not site.received:
                    await asyncio.sleep(0.02)
            assert not termios.tcgetattr(slave)[3] & termios.ICANON  # raw while relaying
            site.proceed.set()
            with pytest.raises(MisunderstoodError, match="does not understand"):
                await task
            return site.received

    try:
        received = asyncio.run(scenario())
        assert [(m.type, m.cols, m.rows) for m in received] == [("resize", 90, 30)]
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_a_terminal_with_a_certificate_not_from_the_ca_file_is_refused(
    certificates: tuple[Path, ssl.SSLContext], tmp_path: Path
) -> None:
    _, server_tls = certificates
    other = tmp_path / "other.pem"
    other.write_bytes(TestCa("Another CA").pem())

    async def scenario() -> None:
        async with terminal_site(server_tls) as (_, url):
            with pytest.raises(ConsoleTrustError, match="not trusted"):
                await relay(url, tls_context(other), TOKEN, 0, 1)

    asyncio.run(scenario())


# -- `bastion console jump`, as a process ----------------------------------------------


def starlette_site() -> Starlette:
    """The site's console API and terminal on one listener, as the appliance serves them."""

    async def sign_in(request: Request) -> JSONResponse:
        body = await request.json()
        if body != {"username": "rep", "password": "right"}:
            return JSONResponse({"error": {"type": "E", "message": "Not right."}}, 401)
        return JSONResponse(
            {
                "token": "bearer-2",
                "expires_at": "2026-12-02T20:00:00Z",
                "username": "rep",
                "display_name": "Rep",
                "role": "representative",
            }
        )

    def authorized(request: Request) -> bool:
        return request.headers.get("Authorization") == "Bearer bearer-2"

    async def about(request: Request) -> JSONResponse:
        """The site runs this console's version: nothing to upgrade before the jump."""
        assert authorized(request)
        version = this_build.site_version()
        return JSONResponse({"site": "site.test", "site_version": version, "site_build": "b"})

    async def jump_items(request: Request) -> JSONResponse:
        assert authorized(request)
        return JSONResponse([{**ITEM, "status": "online", "jumpable": True, "reason": ""}])

    async def sessions(request: Request) -> JSONResponse:
        assert authorized(request)
        assert (await request.json())["jump_item_id"] == 7
        path = "/api/v1/console/sessions/s-9/terminal"
        return JSONResponse({"session_id": "s-9", "terminal_path": path, "token": TOKEN}, 201)

    async def terminal(ws: WebSocket) -> None:
        await ws.accept()
        hello = read_from_console(await ws.receive_text())
        assert hello.type == "console_hello" and hello.token == TOKEN
        await ws.send_text(write(Started()))
        while True:
            data = (await ws.receive()).get("bytes")
            if data:
                await ws.send_bytes(data)
            if data and b"\x04" in data:
                await ws.send_text(write(Exited(code=3)))
                await ws.close()
                return

    api = "/api/v1/console"
    return Starlette(
        routes=[
            Route(f"{api}/sign-in", sign_in, methods=["POST"]),
            Route(f"{api}/about", about),
            Route(f"{api}/jump-items", jump_items),
            Route(f"{api}/sessions", sessions, methods=["POST"]),
            WebSocketRoute(f"{api}/sessions/{{session_id}}/terminal", terminal),
        ]
    )


def bastion(config: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    return subprocess.run(
        [sys.executable, "-m", "bastion", "console", *args],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=60,
    )


def test_jump_relays_piped_input_and_exits_with_the_remote_shells_code(
    certificates: tuple[Path, ssl.SSLContext], tmp_path: Path
) -> None:
    ca_file, _ = certificates
    with served(starlette_site(), ca_file.parent / "site.pem") as site:
        signed = bastion(
            tmp_path,
            *("sign-in", "--site", site, "--username", "rep", "--password-stdin"),
            *("--ca-file", str(ca_file)),
            stdin=b"right\n",
        )
        assert signed.returncode == 0, signed.stderr
        jumped = bastion(tmp_path, "jump", "web1", stdin=b"uname\nexit\n")
    assert jumped.returncode == 3, jumped.stderr
    assert jumped.stdout == b"uname\nexit\n\x04"
    assert jumped.stderr == b""
