"""Application workers as the supervisor sees them: start, ask over HTTP, stop.

A worker is `python -m bastion.entrypoints.worker` run from a site slot: the
slot's `lib/` comes first on its import path. It serves the application on the
sockets the supervisor hands it and, privately, on an abstract Unix socket
where the supervisor checks its health and tells it when to go live, pause
changes or drain. Requests on the private socket carry a per-worker token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.adapters.control_socket import abstract, socket_name

TOKEN_HEADER = "x-bastion-worker-token"


class WorkerError(Exception):
    """A worker did not answer as it should; the message says how."""


@dataclass
class Worker:
    """One worker process: its slot, its private socket and how to reach it."""

    slot: str
    pid: int
    socket: str
    token: str
    process: subprocess.Popen[bytes] | None = None
    started: float = field(default_factory=time.monotonic)
    exit_code: int | None = None

    def describe(self) -> dict[str, Any]:
        return {"slot": self.slot, "pid": self.pid, "socket": self.socket, "token": self.token}

    @classmethod
    def adopt(cls, body: dict[str, Any]) -> Worker:
        """A worker started by this process before it re-executed itself."""
        return cls(str(body["slot"]), int(body["pid"]), str(body["socket"]), str(body["token"]))

    def poll(self) -> int | None:
        """The exit code once the worker has ended (and is reaped), else None."""
        if self.exit_code is not None:
            return self.exit_code
        if self.process is not None:
            self.exit_code = self.process.poll()
            return self.exit_code
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.exit_code = -1
            return self.exit_code
        if pid == 0:
            return None
        self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code

    async def wait(self) -> int:
        while (code := self.poll()) is None:
            await asyncio.sleep(0.05)
        return code

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30
    ) -> tuple[int, dict[str, Any]]:
        """One HTTP/1.1 request on the worker's private socket."""
        payload = json.dumps(body or {}).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: worker\r\n{TOKEN_HEADER}: {self.token}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n"
            "connection: close\r\n\r\n"
        )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.sock_connect(sock, abstract(self.socket)), timeout)
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        except (OSError, TimeoutError) as error:
            sock.close()
            raise WorkerError(f"worker {self.pid} does not answer: {error}") from None
        try:
            writer.write(head.encode() + payload)
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), timeout)
        except (OSError, TimeoutError) as error:
            raise WorkerError(f"worker {self.pid} did not answer {path}: {error}") from None
        finally:
            writer.close()
        return _parse_response(raw, self.pid)

    async def healthy(self) -> bool:
        try:
            status, _ = await self.request("GET", "/check_health", timeout=5)
        except WorkerError:
            return False
        return status == 200

    async def stop(self, grace: float = 15.0) -> int:
        """Ask the worker to drain, then end it if it does not within `grace` seconds."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.wait(), grace)
        except TimeoutError:
            self.kill()
            return await self.wait()

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _parse_response(raw: bytes, pid: int) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise WorkerError(f"worker {pid} gave no HTTP answer") from None
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {"text": body.decode(errors="replace")[:500]}
    return status, parsed if isinstance(parsed, dict) else {"value": parsed}


def spawn(
    data_dir: Path,
    slot: str,
    lib: Path | None,
    env: dict[str, str],
    *,
    standby: bool,
    args: tuple[str, ...] = ("serve",),
) -> Worker:
    """Start a worker from `slot` (`lib` None: the code installed with the appliance)."""
    token = secrets.token_urlsafe(24)
    private = socket_name(data_dir, f"worker-{secrets.token_hex(6)}")
    child_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    child_env.update(env)
    if lib is not None:
        child_env["PYTHONPATH"] = str(lib)
    child_env.update(
        {
            "BASTION_SUPERVISOR_PID": str(os.getpid()),
            "BASTION_WORKER_SOCKET": private,
            "BASTION_WORKER_TOKEN": token,
            "BASTION_WORKER_STANDBY": "1" if standby else "",
            "BASTION_WORKER_SLOT": slot,
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion.entrypoints.worker", *args], env=child_env
    )
    return Worker(slot, process.pid, private, token, process)


async def run_tool(
    lib: Path | None,
    env: dict[str, str],
    *args: str,
    timeout: float,
    module: str = "bastion.entrypoints.worker",
) -> str:
    """Run `python -m <module> <args>` from a slot and return its output."""
    child_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    child_env.update(env)
    child_env["BASTION_SUPERVISOR_PID"] = str(os.getpid())
    if lib is not None:
        child_env["PYTHONPATH"] = str(lib)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        env=child_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise WorkerError(f"`{' '.join(args)}` did not finish within {timeout:.0f} s") from None
    text = output.decode(errors="replace")
    if process.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise WorkerError(f"`{' '.join(args)}` failed (exit {process.returncode}): {tail}")
    return text
