"""How many clients a gateway process admits per second, and when it asks the rest back.

A token bucket refills at this process's share of the site's rate (each of N gateway
processes takes rate/N: the listening socket spreads arrivals evenly, so the sum stays
under the site's rate without the processes talking to each other). A client over the
rate is not dropped: it is told to come back at the next free slot of a virtual queue
(`horizon`), scaled by a small random factor, so the clients turned away return spread
at about the rate the bucket admits instead of all at once.

Pure: the clock and the random source are passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol


class Gate(Protocol):
    """What the gateway asks of its admission gate (this module's, or the shared one)."""

    def admit(self, now: float) -> bool: ...

    def retry_in(self, now: float, rng: random.Random) -> float: ...

    def reconnect_window(self, held: int, margin: float = 1.0) -> float: ...


GOLDEN = 0.6180339887498949


def spread(serial: int) -> float:
    """Where in the reconnect window connection number `serial` returns, in [0, 1).

    Successive serials fill the interval evenly whatever the number of clients (a
    low-discrepancy sequence), so a fleet told "come back at your offset" returns at a
    steady rate; uniform random offsets would come back in clumps the bucket refuses.
    """
    return (serial * GOLDEN) % 1.0


@dataclass
class AdmissionGate:
    rate: float
    """Admissions per second."""
    burst: float
    """Tokens the bucket holds at most (>= 1)."""
    jitter: float = 0.1
    tokens: float = field(init=False)
    updated_at: float = field(default=0.0)
    horizon: float = 0.0

    def __post_init__(self) -> None:
        self.burst = max(1.0, self.burst)
        self.tokens = self.burst

    @classmethod
    def share(
        cls, rate: float, processes: int, burst: float, jitter: float, now: float
    ) -> AdmissionGate:
        """The gate for one of `processes` sharing `rate`; `burst` is a fraction of a second."""
        per_process = rate / processes
        return cls(per_process, per_process * burst, jitter, updated_at=now, horizon=now)

    def admit(self, now: float) -> bool:
        """Take a token if one is free."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated_at) * self.rate)
        self.updated_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def retry_in(self, now: float, rng: random.Random) -> float:
        """Seconds a client turned away now should wait: its slot in the queue, jittered."""
        self.horizon = max(self.horizon, now) + 1.0 / self.rate
        wait = self.horizon - now
        return wait * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)

    def reconnect_window(self, held: int, margin: float = 1.0) -> float:
        """Over how many seconds the `held` clients should spread if they all lost us now."""
        return margin * held / self.rate
