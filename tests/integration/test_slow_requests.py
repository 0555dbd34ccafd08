"""Requests that wait on something slow do not hold up quick ones, on a real appliance over
TLS: database requests take turns (`platform.admission`), and one that holds its turn for
long (here: bundle uploads whose client sends a little and pauses) lets the next in.

On the embedded SQLite two requests run at once. Three stalled uploads hold three turns;
reads must still be answered while they stall, and `/metrics` shows the uploads as
outlasting their turn.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import start_appliance

HOST = "127.0.0.240"
STALLED = 3
DECLARED = 64 * 1024


def _metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def _outlasting_when(api: httpx.Client, expected: int, within: float = 15.0) -> float:
    """The appliance's count of requests past their turn, once it reaches `expected` (or
    whatever it is after `within` seconds). Every scrape is itself a database request."""
    deadline = time.monotonic() + within
    while True:
        found = _metric(api.get("/metrics").text, "bastion_database_requests_outlasting")
        if found >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_reads_are_answered_while_slow_uploads_hold_their_turns(tmp_path: Path) -> None:
    with start_appliance(tmp_path, host=HOST) as appliance:
        token = get_token(appliance, create_client(appliance, "slow")).json()["access_token"]
        release = threading.Event()
        sending = threading.Barrier(STALLED + 1)

        def body() -> Iterator[bytes]:
            yield b"x" * 1024  # inside, with a turn taken; the rest waits
            sending.wait(10)
            release.wait(60)
            yield b"x" * (DECLARED - 1024)

        def upload() -> int:
            headers = {**bearer(token), "content-length": str(DECLARED)}
            with appliance.client(headers=headers, timeout=60) as client:
                answer = client.post("/api/v1/updates/bundles", content=body())
                return answer.status_code

        with (
            ThreadPoolExecutor(STALLED) as pool,
            appliance.client(headers=bearer(token), timeout=10) as api,
        ):
            uploads = [pool.submit(upload) for _ in range(STALLED)]
            try:
                sending.wait(10)
                outlasting = _outlasting_when(api, STALLED)  # each is inside, past its turn
                started = time.monotonic()
                reads = [api.get("/api/v1/audit", params={"limit": 1}) for _ in range(10)]
                took = time.monotonic() - started
                scraped = api.get("/metrics").text
                assert not any(u.done() for u in uploads)  # still stalled throughout
            finally:
                release.set()
            answered = [u.result(60) for u in uploads]
        assert outlasting == STALLED
        assert [r.status_code for r in reads] == [200] * 10
        assert took < 5, f"ten reads took {took:.1f} s beside the stalled uploads"
        assert _metric(scraped, "bastion_database_requests_outlasting") == STALLED
        assert _metric(scraped, "bastion_database_requests_outlasted_total") >= STALLED
        assert all(400 <= status < 500 for status in answered), answered  # not a bundle
        appliance.served_off_the_loop()
