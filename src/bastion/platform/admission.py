"""Admitting requests to the database: a few at once while they run, more while they wait.

A request's database work is Python code on a worker thread, run under the interpreter's
one lock. Fifty requests on fifty threads do not finish sooner than on a few: they take
turns at that lock, and every turn is a thread switch. Under 50 concurrent API reads that
cost a third of the CPU of each. So only `running` requests are admitted at once
(`platform.db.engine.running_at_once`); the others wait on the event loop, holding
nothing, in the order they came.

A request that holds its turn longer than `quick_for` seconds is waiting on something
other than the CPU (a peer appliance, the update service, a lock, a large upload): it
gives its turn to the next and goes on outside the count, so that slow requests never
hold up quick ones. It still counts toward `total`, the bound that keeps every admitted
request a database connection (`platform.db.engine.requests_at_once`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

QUICK_FOR = 0.05


@dataclass
class _Turn:
    running: bool = True
    timer: asyncio.TimerHandle | None = None


@dataclass
class Admission:
    total: int
    running: int
    quick_for: float = QUICK_FOR
    admitted: int = field(default=0, init=False)
    """Requests inside, running or outlasting their turn."""
    busy: int = field(default=0, init=False)
    """Requests inside and still within their turn."""
    outlasted: int = field(default=0, init=False)
    """Requests, since the start, that held their turn longer than `quick_for`."""
    _waiting: deque[asyncio.Future[_Turn]] = field(default_factory=deque, init=False)

    def __post_init__(self) -> None:
        if self.total < 1 or self.running < 1 or self.quick_for <= 0:
            raise ValueError("an admission needs a total and a running count of at least 1")

    @property
    def waiting(self) -> int:
        """Requests waiting for a turn."""
        return len(self._waiting)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for a turn (on the event loop), then hold it for the block."""
        turn = await self._take()
        try:
            yield
        finally:
            self._leave(turn)

    def _open(self) -> bool:
        return self.busy < self.running and self.admitted < self.total

    def _admit(self) -> _Turn:
        turn = _Turn()
        self.admitted += 1
        self.busy += 1
        turn.timer = asyncio.get_running_loop().call_later(self.quick_for, self._outlast, turn)
        return turn

    async def _take(self) -> _Turn:
        if not self._waiting and self._open():
            return self._admit()
        waiter: asyncio.Future[_Turn] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._leave(waiter.result())  # admitted as it was cancelled: pass it on
            elif waiter in self._waiting:
                self._waiting.remove(waiter)
            raise

    def _outlast(self, turn: _Turn) -> None:
        turn.running = False
        self.busy -= 1
        self.outlasted += 1
        self._let_in()

    def _leave(self, turn: _Turn) -> None:
        if turn.timer is not None:
            turn.timer.cancel()
        if turn.running:
            turn.running = False
            self.busy -= 1
        self.admitted -= 1
        self._let_in()

    def _let_in(self) -> None:
        while self._waiting and self._open():
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(self._admit())
