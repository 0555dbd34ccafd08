"""The gateway's collector policy: survivors are kept out of the collector's passes, and
cyclic garbage among them is still freed by the periodic full collection."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from bastion.platform.collector import keep_collections_short

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def test_survivors_leave_the_passes_and_a_full_collection_frees_their_cycles() -> None:
    gc.unfreeze()
    kept = cycle()
    task = asyncio.create_task(keep_collections_short(freeze_every=0.05, full_every=0.5))
    try:
        await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 0
        gc.collect()
        assert kept() is not None  # frozen: an ordinary pass does not even look at it
        for _ in range(40):
            await asyncio.sleep(0.05)
            if kept() is None:
                break
        assert kept() is None  # the full collection thawed and freed it
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
