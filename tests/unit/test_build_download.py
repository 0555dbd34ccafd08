"""The agent's end of a build arriving over its connection: checked against the order's
size and SHA-256 as it comes, and a clear reason whenever it does not come whole."""

from __future__ import annotations

import asyncio
import hashlib
import io

import pytest

from bastion.agents.build_download import BuildDownload
from bastion.agents.errors import UpgradeError
from bastion.agents.protocol import BuildRefused, Upgrade

BUILD = bytes(range(256)) * 1000
ORDER = Upgrade(version="2.0.0", sha256=hashlib.sha256(BUILD).hexdigest(), size=len(BUILD))


def arrive(*pieces: bytes, order: Upgrade = ORDER) -> tuple[io.BytesIO, UpgradeError | None]:
    async def scenario() -> tuple[io.BytesIO, UpgradeError | None]:
        sink = io.BytesIO()
        download = BuildDownload("upgrade-1", order, sink)
        for piece in pieces:
            download.received(piece)
        try:
            await download.finished(quiet_limit=0.2)
        except UpgradeError as error:
            return sink, error
        return sink, None

    return asyncio.run(scenario())


def test_a_build_in_pieces_is_written_whole() -> None:
    sink, error = arrive(BUILD[:65536], BUILD[65536:131072], BUILD[131072:])
    assert error is None and sink.getvalue() == BUILD


def test_bytes_beyond_the_ordered_size_are_refused() -> None:
    _, error = arrive(BUILD, b"x")
    assert error is None  # whole at the last byte ordered: what comes later is ignored
    _, error = arrive(BUILD[:-10], b"y" * 20)
    assert error is not None and f"more than the {len(BUILD)} bytes ordered" in str(error)


def test_bytes_that_are_not_the_ordered_build_are_refused() -> None:
    forged = bytes(reversed(BUILD))
    _, error = arrive(forged)
    assert error is not None and "SHA-256 is" in str(error) and ORDER.sha256 in str(error)


def test_a_site_that_falls_silent_is_given_up_on() -> None:
    _, error = arrive(BUILD[:1000])
    assert error is not None and "sent nothing of the build for 0.2 s" in str(error)


def test_an_order_without_a_size_is_refused_before_anything_is_asked() -> None:
    with pytest.raises(UpgradeError, match="names no size"):
        arrive(order=ORDER.model_copy(update={"size": 0}))


def test_the_sites_refusal_of_this_order_ends_it_with_the_sites_reason() -> None:
    async def scenario() -> str:
        download = BuildDownload("upgrade-1", ORDER, io.BytesIO())
        download.refused(BuildRefused(command_id="upgrade-0", detail="an older order"))
        download.refused(BuildRefused(command_id="upgrade-1", detail="not ordered here"))
        with pytest.raises(UpgradeError) as refused:
            await download.finished(quiet_limit=5)
        return str(refused.value)

    assert asyncio.run(scenario()) == "the site would not send the build: not ordered here"
