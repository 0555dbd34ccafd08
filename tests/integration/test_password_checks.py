"""Password checks run off the event loop on a bounded pool of their own, and a request
beyond those running and waiting is refused at once, saying when to come back."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

from bastion.accounts.passwords import Argon2Hasher, PasswordChecks, PasswordChecksBusyError

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_beyond_those_running_and_waiting_a_check_is_refused_at_once() -> None:
    checks = PasswordChecks(Argon2Hasher(fast=True), at_once=1, waiting=1)
    async with AsyncExitStack() as held:
        await held.enter_async_context(checks.admitted())
        await held.enter_async_context(checks.admitted())
        with pytest.raises(PasswordChecksBusyError) as refused:
            await held.enter_async_context(checks.admitted())
        assert refused.value.retry_after >= 1 and "Nothing was counted" in str(refused.value)
    async with checks.admitted():  # places are given back
        assert await checks.check(checks.hash("a long pass phrase"), "a long pass phrase")


async def test_a_check_leaves_the_event_loop_free() -> None:
    """Argon2 as shipped takes a good fraction of a second; the loop keeps ticking meanwhile."""
    checks = PasswordChecks(Argon2Hasher(), at_once=1)
    hashed = await asyncio.get_running_loop().run_in_executor(None, checks.hash, "secret words")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    assert await checks.check(hashed, "secret words")
    assert not await checks.check(hashed, "other words")
    ticker.cancel()
    assert ticks >= 3


async def test_an_unknown_account_is_checked_against_a_dummy_and_fails() -> None:
    checks = PasswordChecks(Argon2Hasher(fast=True), at_once=2)
    assert await checks.check(None, "anything") is False
    assert checks.at_once == 2
