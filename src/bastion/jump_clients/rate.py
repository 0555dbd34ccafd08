"""How many clients the gateway admits per second, and what it tells the rest.

A generic cell rate algorithm (GCRA, a token bucket kept as one time): `next_free` is
when the next admission is due at `rate`; up to `burst` admissions may run ahead of it.
In any window of t seconds at most `rate * t + burst` clients are admitted.

The welcomes themselves go through the same meter (`pace`), so turns a busy event loop
reaches late are spread out again rather than admitted in one burst.

A client that arrives a little early is not refused: if its turn comes within `hold`
seconds it keeps its connection (TLS already done) and is welcomed when its turn comes.
Refusing it would cost a second TLS handshake later, and on a busy gateway those
handshakes are the CPU that admissions need. A client whose turn is further away is
told to come back (`retry_after`) at a slot of a second queue (`horizon`), so those
turned away return one after another at the rate, each a little jittered, rather than
all at once.

Pure: the clock and the random source are passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

GOLDEN = 0.6180339887498949
MAX_JITTER = 1.0


class Gate(Protocol):
    """What the gateway asks of its admission gate (this module's, or the shared one)."""

    def reserve(self, now: float) -> float | None: ...

    def pace(self, now: float) -> float: ...

    def retry_in(self, now: float, rng: random.Random) -> float: ...

    def reconnect_window(self, held: int, margin: float = 1.0) -> float: ...

    def set_rate(self, rate: float, processes: int, burst: float, now: float) -> None: ...


def spread(serial: int) -> float:
    """Where in the reconnect window connection number `serial` returns, in [0, 1).

    Successive serials fill the interval evenly whatever the number of clients (a
    low-discrepancy sequence), so a fleet told "come back at your offset" returns at a
    steady rate; uniform random offsets would come back in clumps the gate must queue.
    """
    return (serial * GOLDEN) % 1.0


@dataclass
class AdmissionGate:
    rate: float
    """Admissions per second."""
    burst: float
    """Admissions that may run ahead of the rate (>= 1)."""
    jitter: float = 0.1
    hold: float = 2.0
    """Seconds a connected client may wait for its turn instead of being refused."""
    next_free: float = 0.0
    horizon: float = 0.0
    welcomed_until: float = 0.0
    """The same GCRA over welcomes as they actually happen (see `pace`)."""

    def __post_init__(self) -> None:
        self.burst = max(1.0, self.burst)

    @classmethod
    def share(
        cls, rate: float, processes: int, burst: float, jitter: float, hold: float, now: float
    ) -> AdmissionGate:
        """The gate for one of `processes` sharing `rate`; `burst` is a fraction of a second."""
        per_process = rate / processes
        return cls(per_process, per_process * burst, jitter, hold, now, now, now)

    def set_rate(self, rate: float, processes: int, burst: float, now: float) -> None:
        """The site's rate changed: this process's share of `rate` from now on (`burst` is a
        fraction of a second, as in `share`). Turns already given are kept; the backlog
        still ahead is rescaled to the new rate, so a higher rate takes effect at once
        rather than after the queue built at the old one."""
        scale = self.rate / (rate / processes)
        self.next_free = now + max(0.0, self.next_free - now) * scale
        self.welcomed_until = now + max(0.0, self.welcomed_until - now) * scale
        self.rate = rate / processes
        self.burst = max(1.0, self.rate * burst)

    def reserve(self, now: float) -> float | None:
        """Take the next admission: seconds until it (0: now), or None if over `hold`."""
        interval = 1.0 / self.rate
        turn = max(now, self.next_free - (self.burst - 1.0) * interval)
        if turn - now > self.hold:
            return None
        self.next_free = max(now, self.next_free) + interval
        return turn - now

    def pace(self, now: float) -> float:
        """Take a slot for a welcome: seconds until it (0: now).

        Turns are spaced at the rate, but a busy event loop may reach several of them
        late, at once; metering the welcomes themselves gives each of those its own
        slot, so any second stays within rate and burst, late or not.
        """
        interval = 1.0 / self.rate
        turn = max(now, self.welcomed_until - (self.burst - 1.0) * interval)
        self.welcomed_until = max(now, self.welcomed_until) + interval
        return turn - now

    def retry_in(self, now: float, rng: random.Random) -> float:
        """Seconds a client turned away should wait: its slot behind those already queued,
        jittered by `jitter` of the wait but at most a second, so late slots keep order."""
        queue_clears = self.next_free - (self.burst - 1.0) / self.rate - self.hold
        self.horizon = max(self.horizon + 1.0 / self.rate, queue_clears, now)
        wait = self.horizon - now
        spread = min(wait * self.jitter, MAX_JITTER)
        return max(0.0, wait + rng.uniform(-spread, spread))

    def reconnect_window(self, held: int, margin: float = 1.0) -> float:
        """Over how many seconds the `held` clients should spread if they all lost us now."""
        return margin * held / self.rate
