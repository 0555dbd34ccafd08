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
from http import HTTPStatus
from pathlib import Path
from typing import Any

from bastion.supervisor import messages
from bastion.supervisor.control_socket import abstract, socket_name

BEGIN_ENV = "BASTION_WORKER_WAIT_FOR_BEGIN"

TOKEN_HEADER = "x-bastion-worker-token"


class WorkerError(Exception):
    """A worker did not answer as it should; the message says how."""


@dataclass(frozen=True)
class HealthAnswer:
    """What a worker's `/check_health` answered: the HTTP status and the state it gave."""

    status: int
    state: str

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def failed(self) -> bool:
        """An error answer other than 503 "starting".

        A worker answers 503 "starting" only before its application serves; any other
        error answer comes from the application itself: a definite failure.
        """
        return not self.ok and not (self.status == 503 and self.state == "starting")

    def __str__(self) -> str:
        try:
            phrase = f" {HTTPStatus(self.status).phrase}"
        except ValueError:
            phrase = ""
        said = f" ({self.state})" if self.state and self.state != phrase.strip() else ""
        return f"HTTP {self.status}{phrase}{said}"


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
    ready_pipe: int | None = None
    """Read end of the pipe a worker started with `wait_for_begin` says "ready" on."""

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

    async def order(self, order: messages.Order, timeout: float = 30) -> dict[str, Any]:
        """Give the worker an order on its private socket; its answer, or `WorkerError`."""
        status, answer = await self.request(
            "POST", order.path, messages.order_to_wire(order), timeout
        )
        if status != 200:
            raise WorkerError(f"the worker refused {order.path}: {answer.get('detail', answer)}")
        return answer

    async def health(self) -> HealthAnswer | None:
        """Its `/check_health` answer; None while it does not answer at all (starting)."""
        try:
            status, body = await self.request("GET", "/check_health", timeout=5)
        except WorkerError:
            return None
        return HealthAnswer(status, str(body.get("status") or body.get("text") or "")[:200])

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

    async def ready(self, timeout: float) -> None:
        # The pipe is closed by `_ready` whatever happens; never let `kill` close it again
        # (its number may belong to another file by then).
        pipe, self.ready_pipe = self.ready_pipe, None
        await _ready(pipe, f"worker {self.pid}", timeout)

    def begin(self) -> None:
        """Let a worker started with `wait_for_begin` open the database and serve."""
        if self.process is None or self.process.stdin is None:
            raise WorkerError(f"worker {self.pid} was not started to wait for a go")
        try:
            self.process.stdin.write(b"begin\n")
            self.process.stdin.close()
        except OSError as error:
            raise WorkerError(f"worker {self.pid} cannot be told to begin: {error}") from None

    def kill(self) -> None:
        if self.ready_pipe is not None:
            os.close(self.ready_pipe)
            self.ready_pipe = None
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
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
    wait_for_begin: bool = False,
) -> Worker:
    """Start a worker from `slot` (`lib` None: the code installed with the appliance).

    `wait_for_begin`: it imports its code, then waits for `Worker.begin` before it opens
    the database, so that an install can start it before pausing changes.
    """
    token = secrets.token_urlsafe(24)
    private = socket_name(data_dir, f"worker-{secrets.token_hex(6)}")
    ready_read, ready_write = os.pipe() if wait_for_begin else (None, None)
    child_env = _environment(lib, env, ready_write)
    child_env.update(
        {
            "BASTION_SUPERVISOR_PID": str(os.getpid()),
            "BASTION_WORKER_SOCKET": private,
            "BASTION_WORKER_TOKEN": token,
            "BASTION_WORKER_STANDBY": "1" if standby else "",
            "BASTION_WORKER_SLOT": slot,
        }
    )
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "bastion.entrypoints.worker", "serve"],
            env=child_env,
            stdin=subprocess.PIPE if wait_for_begin else subprocess.DEVNULL,
            pass_fds=() if ready_write is None else (ready_write,),
        )
    finally:
        if ready_write is not None:
            os.close(ready_write)
    return Worker(slot, process.pid, private, token, process, ready_pipe=ready_read)


async def _ready(pipe: int | None, what: str, timeout: float) -> None:
    """Wait for a process started with `wait_for_begin` to say it is ready."""
    if pipe is None:
        raise WorkerError(f"{what} was not started to wait for a go")
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()
    os.set_blocking(pipe, False)

    def said_something() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(pipe, said_something)
    try:
        await asyncio.wait_for(readable, timeout)
        said = os.read(pipe, 16)
    except TimeoutError:
        raise WorkerError(f"{what} was not ready within {timeout:g} s") from None
    finally:
        loop.remove_reader(pipe)
        os.close(pipe)
    if not said.startswith(b"ready"):
        raise WorkerError(f"{what} exited before it was ready")


def _environment(lib: Path | None, env: dict[str, str], ready: int | None) -> dict[str, str]:
    child_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", BEGIN_ENV)}
    child_env.update(env)
    child_env["BASTION_SUPERVISOR_PID"] = str(os.getpid())
    if lib is not None:
        child_env["PYTHONPATH"] = str(lib)
    if ready is not None:
        child_env[BEGIN_ENV] = str(ready)
    return child_env


class Tool:
    """A console tool run from a slot (`python -m <module> <args>`)."""

    def __init__(
        self, process: asyncio.subprocess.Process, args: tuple[str, ...], ready_pipe: int | None
    ) -> None:
        self.process, self.args, self.ready_pipe = process, args, ready_pipe

    async def ready(self, timeout: float) -> None:
        pipe, self.ready_pipe = self.ready_pipe, None
        await _ready(pipe, f"`{' '.join(self.args)}`", timeout)

    def begin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"begin\n")
        self.process.stdin.close()

    async def result(self, timeout: float) -> str:
        """Its output once it succeeded; a `WorkerError` with its last lines otherwise."""
        what = " ".join(self.args)
        try:
            output, _ = await asyncio.wait_for(self.process.communicate(), timeout)
        except TimeoutError:
            self.kill()
            await self.process.wait()
            raise WorkerError(f"`{what}` did not finish within {timeout:.0f} s") from None
        text = output.decode(errors="replace")
        if self.process.returncode != 0:
            tail = "\n".join(text.strip().splitlines()[-5:])
            raise WorkerError(f"`{what}` failed (exit {self.process.returncode}): {tail}")
        return text

    def kill(self) -> None:
        if self.ready_pipe is not None:
            os.close(self.ready_pipe)
            self.ready_pipe = None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


async def all_ready(timeout: float, *starting: Worker | Tool) -> None:
    """Wait until every process said it is ready; the first that fails (or `timeout`) ends
    the wait for the others too, so that none is left waiting on its pipe."""
    waits = [asyncio.ensure_future(process.ready(timeout)) for process in starting]
    try:
        await asyncio.gather(*waits)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


async def start_tool(
    lib: Path | None,
    env: dict[str, str],
    *args: str,
    module: str = "bastion.entrypoints.worker",
    wait_for_begin: bool = False,
) -> Tool:
    ready_read, ready_write = os.pipe() if wait_for_begin else (None, None)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            env=_environment(lib, env, ready_write),
            stdin=asyncio.subprocess.PIPE if wait_for_begin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            pass_fds=() if ready_write is None else (ready_write,),
        )
    finally:
        if ready_write is not None:
            os.close(ready_write)
    return Tool(process, args, ready_read)


async def run_tool(
    lib: Path | None,
    env: dict[str, str],
    *args: str,
    timeout: float,
    module: str = "bastion.entrypoints.worker",
) -> str:
    """Run `python -m <module> <args>` from a slot and return its output."""
    tool = await start_tool(lib, env, *args, module=module)
    return await tool.result(timeout)
