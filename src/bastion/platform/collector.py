"""Keeping Python's cyclic garbage collector from stalling a process that holds many
long-lived objects (a gateway's tens of thousands of connections).

A full pass of the collector (its oldest generation) scans every tracked object. In a
gateway holding ~16,700 Jump Clients (about 550 MiB of objects) such a pass took 0.5 to
2 s and came every 15 to 25 s while the fleet grew, finding nothing to free; every
heartbeat waiting meanwhile took that long (`bench/bench_held_fleet.py`: heartbeat p99
2.5 s). Objects that have survived are therefore moved out of the collector's passes
(`gc.freeze`) at a steady interval, so a pass scans only what is new since. Reference
counting still frees frozen objects as usual; only garbage in reference cycles among
them waits, until the full collection done once every `full_every` seconds (one stall
of that length an hour instead of one every few seconds).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger("bastion.collector")
FREEZE_EVERY = 30.0
FULL_EVERY = 3600.0


async def keep_collections_short(
    freeze_every: float = FREEZE_EVERY, full_every: float = FULL_EVERY
) -> None:
    """Run for the life of the process: freeze the survivors every `freeze_every`
    seconds; thaw and collect everything once every `full_every` seconds."""
    gc.freeze()
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(freeze_every)
        if time.monotonic() - last_full >= full_every:
            started = time.perf_counter()
            gc.unfreeze()
            freed = gc.collect()
            last_full = time.monotonic()
            log.info(
                "full garbage collection: %d freed in %.0f ms",
                freed,
                (time.perf_counter() - started) * 1000,
            )
        gc.freeze()
