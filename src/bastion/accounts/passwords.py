"""Argon2 hashes for passwords and API client secrets, and the bound on how many are
worked out at once.

Argon2 is slow on purpose (tens to hundreds of milliseconds of CPU and 64 MiB each), so
a flood of sign-ins could take every core and every worker thread. :class:`PasswordChecks`
does every hash of the appliance on a few threads of its own, off the event loop and
outside any database transaction; a sign-in or token request that would wait behind
too many others is refused at once (429) instead of piling up.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bastion.platform.errors import ThrottledError

T = TypeVar("T")
# Checked when the account does not exist, so that both answers take as long.
_DUMMY_SECRET = "not-a-real-account-secret"


class Argon2Hasher:
    """Implements :class:`bastion.accounts.rules.Hasher`."""

    def __init__(self, fast: bool = False) -> None:
        # The fast profile keeps argon2id but with less memory and time, for test suites.
        self._hasher = (
            PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
            if fast
            else PasswordHasher()
        )

    def hash(self, secret: str) -> str:
        return self._hasher.hash(secret)

    def verify(self, hashed: str, secret: str) -> bool:
        try:
            return self._hasher.verify(hashed, secret)
        except (VerificationError, InvalidHashError):
            return False


class PasswordChecksBusyError(ThrottledError):
    """Too many passwords are being checked at once; nothing was counted or changed."""


CHECK_NICENESS = 10
"""How much lower than the rest of the process a hashing thread runs (Linux thread nice)."""


def _yield_to_answers() -> None:
    """Hashing threads give way to the event loop: when the cores are busy, the scheduler
    runs the thread answering requests (health checks among them) first."""
    # Not Linux, or not allowed: the thread runs at normal priority.
    with suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CHECK_NICENESS)


def default_at_once() -> int:
    """One core is left to the event loop and the database: all the others may hash."""
    return max(1, (os.cpu_count() or 2) - 1)


class PasswordChecks:
    """A :class:`Hasher` whose every hash and check runs on at most `at_once` threads of its
    own. Sign-in and token requests are admitted with :meth:`admitted`: at most `waiting`
    more than `at_once` at a time, the rest refused with :class:`PasswordChecksBusyError`.

    Admission is counted on the event loop that serves the requests (one per worker).
    """

    def __init__(self, hasher: Argon2Hasher, at_once: int = 0, waiting: int = 32) -> None:
        self._hasher = hasher
        self.at_once = at_once if at_once > 0 else default_at_once()
        self.waiting = max(0, waiting)
        self._threads = ThreadPoolExecutor(
            self.at_once, thread_name_prefix="password-check", initializer=_yield_to_answers
        )
        self._admitted = 0
        self._seconds = 0.1
        """How long one check took lately, to say when to come back."""
        self._dummy: str | None = None

    def hash(self, secret: str) -> str:
        return self._run(self._hasher.hash, secret)

    def verify(self, hashed: str, secret: str) -> bool:
        return self._run(self._hasher.verify, hashed, secret)

    def _run(self, work: Callable[..., T], *args: str) -> T:
        """For callers on a worker thread: wait for a free hashing thread, then hash."""
        return self._threads.submit(self._timed, work, *args).result()

    def _timed(self, work: Callable[..., T], *args: str) -> T:
        started = time.perf_counter()
        try:
            return work(*args)
        finally:
            self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - started)

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """A place among the checks running or waiting, or a refusal that says when to retry."""
        if self._admitted >= self.at_once + self.waiting:
            wait = math.ceil(self._seconds * (self._admitted / self.at_once + 1))
            raise PasswordChecksBusyError(
                "The appliance is checking many sign-ins at once. Nothing was counted against "
                f"the account; try again in {wait} second(s).",
                wait,
            )
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def check(self, hashed: str | None, secret: str) -> bool:
        """Verify `secret` on a hashing thread without blocking the event loop; against a
        dummy hash when there is no account (None), so that the answer takes as long."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._check, hashed, secret)

    def _check(self, hashed: str | None, secret: str) -> bool:
        if hashed is None:
            if self._dummy is None:
                self._dummy = self._hasher.hash(_DUMMY_SECRET)
            self._timed(self._hasher.verify, self._dummy, secret)
            return False
        return self._timed(self._hasher.verify, hashed, secret)
