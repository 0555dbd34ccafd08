"""Many clients signing in at once, and a poller timing other requests meanwhile: for the
sign-in concurrency tests and `bench/bench_sign_in.py`."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SESSION_COOKIE = "bastion_session"


@dataclass
class Tally:
    """What the sign-in clients got: statuses, transport failures, and how long it took."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())


@dataclass
class Timings:
    """Latency (seconds) and status of each poll; None: no answer in time."""

    polls: list[tuple[float, int | None]] = field(default_factory=list)

    def percentile(self, share: float) -> float:
        ordered = sorted(latency for latency, _ in self.polls)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0

    @property
    def statuses(self) -> Counter[int | None]:
        return Counter(status for _, status in self.polls)


async def csrf_token(client: httpx.AsyncClient) -> str:
    """Open the sign-in page; its form's token matches the cookie the page sets."""
    page = await client.get("/login")
    match = CSRF.search(page.text)
    assert match, f"no sign-in form at /login: {page.status_code}"
    return match.group(1)


async def sign_in_once(
    client: httpx.AsyncClient, token: str, username: str, password: str
) -> httpx.Response:
    fields = {"csrf_token": token, "username": username, "password": password}
    response = await client.post("/login", data=fields)
    client.cookies.delete(SESSION_COOKIE)  # sign in afresh next time
    return response


async def sign_in_clients(
    base_url: str,
    tls: ssl.SSLContext,
    clients: int,
    seconds: float,
    credentials: Callable[[int, int], tuple[str, str]],
    timeout: float = 60.0,
    patient: bool = False,
) -> Tally:
    """`clients` keep-alive TLS clients posting sign-ins back to back for `seconds`;
    `credentials(client, attempt)` says which username and password each one sends.
    Patient clients wait as long as a 429's Retry-After says; others retry at once."""
    tally = Tally()
    deadline = time.monotonic() + seconds

    async def one(number: int) -> None:
        async with httpx.AsyncClient(base_url=base_url, verify=tls, timeout=timeout) as client:
            try:
                token, attempt = await csrf_token(client), 0
                while time.monotonic() < deadline:
                    username, password = credentials(number, attempt)
                    response = await sign_in_once(client, token, username, password)
                    tally.statuses[response.status_code] += 1
                    attempt += 1
                    if patient and response.status_code == 429:
                        wait = float(response.headers.get("retry-after", "1"))
                        await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            except httpx.HTTPError as error:
                tally.failures.append(f"client {number}: {type(error).__name__}: {error}")

    started = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(clients)))
    tally.seconds = time.monotonic() - started
    return tally


async def poll(
    client: httpx.AsyncClient, path: str, seconds: float, every: float, timeout: float
) -> Timings:
    """GET `path` every `every` seconds for `seconds`, each with its own `timeout`."""
    timings = Timings()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            response = await client.get(path, timeout=timeout)
            timings.polls.append((time.monotonic() - started, response.status_code))
        except httpx.TimeoutException:
            timings.polls.append((time.monotonic() - started, None))
        await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))
    return timings


async def burst(
    base_url: str, tls: ssl.SSLContext, attempts: list[tuple[str, str]]
) -> list[httpx.Response]:
    """Every attempt at once, each on its own connection with its own sign-in form, all
    posted together once every form is open."""
    clients = [httpx.AsyncClient(base_url=base_url, verify=tls, timeout=60) for _ in attempts]
    try:
        tokens = await asyncio.gather(*(csrf_token(c) for c in clients))
        return list(
            await asyncio.gather(
                *(
                    sign_in_once(client, token, username, password)
                    for client, token, (username, password) in zip(
                        clients, tokens, attempts, strict=True
                    )
                )
            )
        )
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
