"""The upgrade bandwidth cap: every build download of a worker shares it, oldest first."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import time
from pathlib import Path

from bastion.jump_clients.builds import CHUNK as CHUNK_SERVED
from bastion.jump_clients.builds import MIB, Bandwidth, Build, create_bandwidth_file, stream

CHUNK = 64 * 1024


async def download(
    bandwidth: Bandwidth, size: int, since: float, ended: dict[str, float], name: str
) -> None:
    sent = 0
    while sent < size:
        await bandwidth.take(CHUNK, since)
        sent += CHUNK
        await asyncio.sleep(0)  # the chunk goes out
    ended[name] = time.monotonic()


def test_downloads_together_keep_to_the_cap_and_end_oldest_first() -> None:
    async def scenario() -> dict[str, float]:
        bandwidth = Bandwidth(4)  # 4 MiB/s: 1 MiB a download takes 0.25 s alone
        ended: dict[str, float] = {}
        started = time.monotonic()
        await asyncio.gather(
            *(download(bandwidth, MIB, started + n, ended, f"d{n}") for n in range(6))
        )
        return {name: at - started for name, at in ended.items()}

    ended = asyncio.run(asyncio.wait_for(scenario(), 20))
    # 6 MiB at 4 MiB/s: 1.5 s at the cap (the first chunk goes at once).
    assert 1.3 <= max(ended.values()) <= 3.0
    # Oldest first: each ends about a quarter of a second after the one before it, not
    # all together at the end as an even share would have them.
    order = sorted(ended, key=ended.__getitem__)
    assert order == [f"d{n}" for n in range(6)]
    assert ended["d0"] < 0.8  # an even share would end it with the others, at 1.5 s
    gaps = [ended[b] - ended[a] for a, b in itertools.pairwise(order)]
    assert all(0.15 <= gap <= 1.0 for gap in gaps), gaps


def test_a_download_that_stops_asking_leaves_the_bandwidth_to_the_next() -> None:
    async def scenario() -> tuple[float, dict[str, float]]:
        bandwidth = Bandwidth(4)
        ended: dict[str, float] = {}
        started = time.monotonic()
        stalled = asyncio.Event()

        async def slow_reader() -> None:
            await bandwidth.take(CHUNK, started)  # oldest: first in line
            await stalled.wait()  # its client reads nothing more for now

        stuck = asyncio.create_task(slow_reader())
        await asyncio.sleep(0.01)
        await download(bandwidth, MIB, started + 1, ended, "next")
        took = time.monotonic() - started
        stuck.cancel()
        return took, ended

    took, _ = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert took < 0.8  # 1 MiB at 4 MiB/s, not held behind the stalled one


def test_a_download_that_ends_while_waiting_gives_its_turn_away() -> None:
    async def scenario() -> float:
        bandwidth = Bandwidth(1)
        ended: dict[str, float] = {}
        started = time.monotonic()
        await bandwidth.take(CHUNK, started)  # the pacer is busy for 1/16 s
        cut = asyncio.create_task(bandwidth.take(8 * MIB, started))  # oldest, then cut off
        await asyncio.sleep(0.01)
        cut.cancel()
        await download(bandwidth, 4 * CHUNK, started + 1, ended, "next")
        return time.monotonic() - started

    # Four chunks after the first, at 1 MiB/s: about 0.3 s. The cut download's 8 MiB
    # would have held it 8 s.
    assert asyncio.run(asyncio.wait_for(scenario(), 20)) < 1.0


def test_a_new_rate_applies_to_the_next_chunks() -> None:
    async def scenario() -> float:
        bandwidth = Bandwidth(1)
        ended: dict[str, float] = {}
        started = time.monotonic()
        bandwidth.set_rate(8)
        await download(bandwidth, 2 * MIB, started, ended, "fast")
        return time.monotonic() - started

    assert asyncio.run(asyncio.wait_for(scenario(), 20)) < 0.6  # 2 s at the old 1 MiB/s


def test_a_build_streams_whole_in_chunks_of_the_served_size(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SERVED + 17)
    wheel = tmp_path / "bastion-1.1.0.whl"
    wheel.write_bytes(data)
    build = Build("1.1.0", hashlib.sha256(data).hexdigest(), len(data), wheel)

    async def scenario() -> list[bytes]:
        return [chunk async for chunk in stream(build, Bandwidth(100))]

    chunks = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert b"".join(chunks) == data
    assert [len(chunk) for chunk in chunks] == [CHUNK_SERVED, CHUNK_SERVED, 17]


def test_pacers_sharing_a_ledger_keep_to_one_cap_together(tmp_path: Path) -> None:
    """Two processes serving builds (here two pacers on one file, as the worker and a
    gateway process are): their downloads together keep to the cap either one set."""
    ledger = tmp_path / "bandwidth"
    create_bandwidth_file(ledger)

    async def scenario() -> float:
        worker, gateway = Bandwidth(4, ledger), Bandwidth(None, ledger)
        assert gateway.rate == 4 * MIB  # the cap the other one set
        ended: dict[str, float] = {}
        started = time.monotonic()
        await asyncio.gather(
            download(worker, MIB, started, ended, "worker"),
            download(gateway, MIB, started, ended, "gateway"),
        )
        worker.close()
        gateway.close()
        return max(ended.values()) - started

    took = asyncio.run(asyncio.wait_for(scenario(), 20))
    # 2 MiB at 4 MiB/s: half a second; each at the whole cap would take a quarter.
    assert 0.4 <= took <= 2.0, took


def test_a_shared_ledger_sends_nothing_until_a_cap_is_set(tmp_path: Path) -> None:
    ledger = tmp_path / "bandwidth"
    create_bandwidth_file(ledger)

    async def scenario() -> tuple[bool, bool]:
        gateway = Bandwidth(None, ledger)
        waiting = asyncio.ensure_future(gateway.take(CHUNK, 0.0))
        await asyncio.sleep(0.3)
        before = waiting.done()
        setter = Bandwidth(8, ledger)
        await asyncio.wait_for(waiting, Bandwidth.UNSET_WAIT + 2)
        gateway.close()
        setter.close()
        return before, waiting.done()

    assert asyncio.run(scenario()) == (False, True)
