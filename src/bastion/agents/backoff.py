"""When an agent tries again: exponential backoff with full jitter, shaped by the site.

Three cases, all pure (the random source is passed in):

- a failed attempt (no route, TLS failure, broken protocol): wait a uniform time in
  ``[0, min(cap, base * 2**(failures - 1))]`` ("full jitter": a fleet that failed
  together does not come back together);
- the site said ``retry_after``: wait what it said (it adds the jitter, because it
  knows how many others it turned away), at most ``max_retry_after``;
- an established connection was lost: wait the `reconnect_after` the site last gave
  this client. The site hands its clients offsets spread evenly over the time it needs
  to admit them all again, so a fleet whose gateway restarted returns at the rate the
  site admits rather than at once (or in random clumps, as uniform jitter would).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    base: float = 1.0
    cap: float = 300.0
    max_retry_after: float = 86400.0

    def after_failure(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after `failures` consecutive failed attempts (>= 1)."""
        exponent = min(max(failures - 1, 0), 62)
        return rng.uniform(0.0, min(self.cap, self.base * 2.0**exponent))

    def after_retry_after(self, seconds: float) -> float:
        """Seconds to wait when the site asked for `seconds`."""
        return min(max(seconds, 0.0), self.max_retry_after)

    def after_lost(self, offset: float) -> float:
        """Seconds to wait after a held connection broke, given the site's offset for us."""
        return min(max(offset, 0.0), self.max_retry_after)
