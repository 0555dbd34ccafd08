"""One connection rate for all gateway processes: the token bucket in a shared file.

Splitting the site's rate evenly (each of N processes takes rate/N) needs no
coordination, but a client that is told to come back is hashed to any process when it
does, so each process sees the returning fleet in random clumps and refuses some of
it again. With a rate file, every process reads and updates one bucket and one queue of
return slots, under an advisory lock held for a few microseconds per admission:

    <next_free: f64> <horizon: f64> <welcomed_until: f64>    (CLOCK_MONOTONIC seconds,
                                                               the same in every process)
    <rate: f64>                                               the site rate they were kept at

The supervisor makes the file (on a tmpfs) before it starts the gateways; each process
opens it by path, because `flock` excludes open files, not processes. A process that
dies holding the lock releases it with its descriptors, so no crash can wedge the rate.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import random
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bastion.jump_clients.rate import AdmissionGate
from bastion.platform.files import write_atomically

STATE = struct.Struct("<dddd")


def create_rate_file(path: Path, now: float, rate: float = 0.0) -> None:
    """A gate with its whole burst free and an empty return queue, as of monotonic `now`
    (`rate`: the site rate; 0 takes the first process's)."""
    write_atomically(path, STATE.pack(now, now, now, rate), mode=0o600)


class SharedAdmissionGate:
    """The site's whole rate and burst, shared through `path` by `processes` gateways."""

    def __init__(
        self, path: Path, rate: float, burst: float, jitter: float, hold: float, processes: int
    ) -> None:
        self.rate, self.burst, self.jitter, self.hold = rate, max(1.0, burst), jitter, hold
        self.share = rate / processes
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self._map = mmap.mmap(self._fd, STATE.size)

    def set_rate(self, rate: float, processes: int, burst: float, now: float) -> None:
        """The site's rate changed (each process reads it from the site's settings). The
        file remembers the rate its backlog was kept at, so the first process to lock it
        with the new rate rescales the backlog once (see `AdmissionGate.set_rate`)."""
        self.rate, self.burst, self.share = rate, max(1.0, rate * burst), rate / processes
        with self._locked(rescale_at=now):
            pass

    @contextmanager
    def _locked(self, rescale_at: float | None = None) -> Iterator[AdmissionGate]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            *state, kept_at = STATE.unpack_from(self._map)
            gate = AdmissionGate(self.rate, self.burst, self.jitter, self.hold, *state)
            if rescale_at is not None and kept_at and kept_at != self.rate:
                gate.rate = kept_at
                gate.set_rate(self.rate, 1, self.burst / self.rate, rescale_at)
                kept_at = self.rate
            yield gate
            values = (gate.next_free, gate.horizon, gate.welcomed_until, kept_at or self.rate)
            STATE.pack_into(self._map, 0, *values)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def reserve(self, now: float) -> float | None:
        with self._locked() as gate:
            return gate.reserve(now)

    def pace(self, now: float) -> float:
        with self._locked() as gate:
            return gate.pace(now)

    def retry_in(self, now: float, rng: random.Random) -> float:
        with self._locked() as gate:
            return gate.retry_in(now, rng)

    def reconnect_window(self, held: int, margin: float = 1.0) -> float:
        """This process's clients over its share: every process's window is about the
        fleet over the site's rate, since the listening socket spreads clients evenly."""
        return margin * held / self.share

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
