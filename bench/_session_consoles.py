"""Consoles that speak the terminal WebSocket themselves (`access_console/protocol.py`,
through `access_console.terminal.open_terminal`), with no console CLI and no local
terminal: the probe whose keystrokes the benchmark times and, run as a script, the load.

As a script it holds sessions that each print a 100-character line every 100 ms (about
1 KiB/s; the remote loop forks nothing). It reads target session counts from stdin, one
a line, opens sessions until it holds that many, and prints JSON lines: once a target is
reached, and every second the sessions held and the bytes received so far.

    python bench/_session_consoles.py --site URL --ca-file CA --token TOKEN --item ID
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.asyncio.client import ClientConnection

from bastion.access_console.client import ConsoleClient
from bastion.access_console.protocol import End, Started, read_from_site, write
from bastion.access_console.terminal import open_terminal

LINE = "0123456789" * 10
LOAD_LOOP = (
    "f=$(mktemp -u); mkfifo $f; exec 3<>$f; rm $f; "
    f"while :; do echo {LINE}; read -t 0.1 -u 3; done\r"
)
"""A line every 100 ms; `read -t` on a FIFO nobody writes is a sleep without a fork."""
RAW_CAT = "stty raw -echo; echo cat-$((6*7)); exec cat\r"
OPENING_AT_ONCE = 8


class WsConsole:
    """One session's terminal connection, driven directly."""

    def __init__(self, client: ConsoleClient, item: int) -> None:
        self.client = client
        self.item = item
        self.ws: ClientConnection | None = None
        self.received = 0
        self.tail = b""

    async def open(self) -> None:
        """Open the session and wait until the Jump Client joined (`started`)."""
        opened = await asyncio.to_thread(self.client.open_session, self.item)
        url = self.client.terminal_url(opened)
        self.ws = await open_terminal(url, self.client.tls, opened.token)
        first = await asyncio.wait_for(self.ws.recv(), 60)
        if not isinstance(first, str) or not isinstance(read_from_site(first), Started):
            raise RuntimeError(f"the session did not start: {first!r}")

    async def type(self, keys: str | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(keys.encode() if isinstance(keys, str) else keys)

    async def _frame(self, timeout: float) -> bytes:
        assert self.ws is not None
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(frame, str):
            raise RuntimeError(f"the session ended: {frame}")
        self.received += len(frame)
        return frame

    async def expect(self, text: str, timeout: float = 60.0) -> None:
        """Read output until `text` was shown (what comes before it is dropped)."""
        wanted = text.encode()
        deadline = time.monotonic() + timeout
        while (at := self.tail.find(wanted)) < 0:
            self.tail = self.tail[-len(wanted) :]
            self.tail += await self._frame(max(0.0, deadline - time.monotonic()))
        self.tail = self.tail[at + len(wanted) :]

    async def drain(self, quiet: float = 0.2) -> None:
        with contextlib.suppress(TimeoutError):
            while True:
                await self._frame(quiet)
        self.tail = b""

    async def ready(self) -> None:
        await self.type("echo ready-$((6*7))\r")
        await self.expect("ready-42")
        await self.drain()

    async def start_raw_cat(self) -> None:
        await self.type(RAW_CAT)
        await self.expect("cat-42")
        await asyncio.sleep(0.2)
        await self.drain()

    async def echo_round_trip(self, key: bytes) -> float:
        """Seconds from sending `key` to its coming back (a raw `cat` at the far end)."""
        started = time.perf_counter()
        await self.type(key)
        got = b""
        while key not in got:
            got += await self._frame(10.0)
        return time.perf_counter() - started

    async def read_forever(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):
            async for frame in self.ws:
                self.received += len(frame)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.send(write(End()))
                await asyncio.wait_for(self.ws.close(), 5)


async def round_trips(console: WsConsole, count: int, gap: float) -> list[float]:
    found = []
    for _ in range(count):
        found.append(await console.echo_round_trip(b"k"))
        await asyncio.sleep(gap)
    return found


# -- the load -----------------------------------------------------------------------------


class Load:
    def __init__(self, client: ConsoleClient, item: int) -> None:
        self.client = client
        self.item = item
        self.consoles: list[WsConsole] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.gate = asyncio.Semaphore(OPENING_AT_ONCE)

    async def one(self) -> None:
        async with self.gate:
            console = WsConsole(self.client, self.item)
            await console.open()
            await console.ready()
            await console.type(LOAD_LOOP)
        self.consoles.append(console)
        task = asyncio.create_task(console.read_forever())
        self.tasks.add(task)

    async def reach(self, target: int) -> None:
        started = time.monotonic()
        wanted = target - len(self.consoles)
        await asyncio.gather(*(self.one() for _ in range(wanted)))
        _emit({"reached": len(self.consoles), "seconds": round(time.monotonic() - started, 1)})

    def received(self) -> int:
        return sum(console.received for console in self.consoles)


def _emit(line: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def _report(load: Load) -> None:
    while True:
        await asyncio.sleep(1.0)
        _emit({"sessions": len(load.consoles), "bytes": load.received(), "at": time.time()})


async def serve(args: argparse.Namespace) -> None:
    client = ConsoleClient(args.site, Path(args.ca_file), token=args.token)
    load = Load(client, args.item)
    reporting = asyncio.create_task(_report(load))
    while line := await asyncio.to_thread(sys.stdin.readline):
        await load.reach(int(line))
    reporting.cancel()
    await asyncio.gather(*(console.close() for console in load.consoles))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--site", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--item", type=int, required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
