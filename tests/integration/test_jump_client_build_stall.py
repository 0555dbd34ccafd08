"""A Jump Client that stops reading its download of the site's build (issue 10), against
the site's app on its own listeners (uvicorn, real TLS, real SQLite): the site aborts the
connection once a send has made no progress for `build_stall_seconds`, logs it, fails
that client's upgrade with the reason (its place in the rollout goes to the next
client), and serves everyone else meanwhile and after."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bastion.jump_clients.builds import download_token
from bastion.jump_clients.fleet import GatewayFleet, Rollout
from bastion.jump_clients.models import JumpClientRow
from bastion.jump_clients.store import wake_secret
from bastion.platform import build
from bastion.supervisor.slots import CURRENT, MANIFEST
from tests.integration.test_sessions import HOST, Site, add_client, site

__all__ = ["site"]
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
STALL = 2.0
SIZE = 24 * 1024 * 1024
"""Far more than the sockets' buffers hold between the site and a reader that stopped."""


@pytest.fixture
def rollout(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rollout]:
    """The site runs a site release whose Jump Client build is SIZE bytes (its slot and
    wheel on disk as an install leaves them), and cuts stalled downloads after STALL."""
    settings = site.runtime.settings
    monkeypatch.setattr(settings, "build_stall_seconds", STALL)
    version = build.site_version()
    releases = settings.data_dir / "releases"
    slot = releases / f"site-{version}-test"
    slot.mkdir(parents=True)
    manifest = {"factory": False, "package": str(slot / "package.tar"), "version": version}
    (slot / MANIFEST).write_text(json.dumps(manifest))
    (releases / CURRENT).unlink(missing_ok=True)
    (releases / CURRENT).symlink_to(slot.name)
    wheel = settings.data_dir / "blobs" / "jump-clients" / f"bastion-{version}.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    wheel.write_bytes(os.urandom(SIZE))
    unused = socket.socket()  # the fleet is never started: only its wake secret is used
    fleet = GatewayFleet(unused, settings.data_dir, 1, wake_secret(site.runtime.session_factory))
    made = Rollout(fleet, site.runtime, version, settings.data_dir)
    site.runtime.add(made)
    try:
        yield made
    finally:
        unused.close()


def download_path(rollout: Rollout, client_id: str) -> str:
    built = rollout.build()
    assert built is not None and built.size == SIZE
    token = download_token(rollout.fleet.wake_secret, client_id, built.sha256, time.time())
    return f"/api/v1/jump-clients/builds/{built.sha256}?token={token}"


def upgrade_of(site: Site, row_id: int) -> tuple[str, str]:
    with site.runtime.uow() as uow:
        row = uow.session.get(JumpClientRow, row_id)
        assert row is not None
        return row.upgrade_state, row.upgrade_detail


async def full_download(site: Site, path: str) -> str:
    """Download the whole build as a client that reads; its SHA-256."""
    digest = hashlib.sha256()
    async with (
        httpx.AsyncClient(base_url=site.url, verify=site.tls, timeout=30) as client,
        client.stream("GET", path) as answer,
    ):
        assert answer.status_code == 200, await answer.aread()
        async for chunk in answer.aiter_bytes():
            digest.update(chunk)
    return digest.hexdigest()


async def stalled_reader(site: Site, path: str) -> tuple[Any, asyncio.StreamWriter]:
    """A client with a tiny receive buffer that asks for the build, reads the answer's
    first line and then nothing more."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, (HOST, site.port))
    reader, writer = await asyncio.open_connection(sock=raw, ssl=site.tls, server_hostname=HOST)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    assert status.startswith(b"HTTP/1.1 200"), status
    writer.transport.pause_reading()
    return reader, writer


async def test_a_client_that_stops_reading_is_cut_off_and_others_are_served(
    site: Site, rollout: Rollout, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bastion.gateway")
    now = datetime.now(UTC)
    upgrading = {"upgrade_state": "upgrading", "upgrade_started_at": now, "version": "0.0.1"}
    stalled_row = add_client(site, "stalled-1", **upgrading, upgrade_version=rollout.site_version)
    built = rollout.build()
    assert built is not None

    started = time.monotonic()
    reader, writer = await stalled_reader(site, download_path(rollout, "jc_stalled_1"))
    meanwhile = await full_download(site, download_path(rollout, "jc_reader_1"))
    assert meanwhile == built.sha256  # the stalled one holds nobody else up
    while upgrade_of(site, stalled_row)[0] == "upgrading":
        assert time.monotonic() - started < STALL + 15, "the stalled download was not cut off"
        await asyncio.sleep(0.1)
    took = time.monotonic() - started
    state, detail = upgrade_of(site, stalled_row)
    assert state == "failed" and "stalled" in detail and f"{STALL:g} s" in detail, detail
    assert "jc_stalled_1 read nothing of the build" in caplog.text

    writer.transport.resume_reading()  # the connection was reset, not politely closed:
    received, cut = 0, False  # what the client still had, then the reset
    try:
        while chunk := await asyncio.wait_for(reader.read(1 << 20), 10):
            received += len(chunk)
    except (ConnectionResetError, OSError):
        cut = True
    writer.close()
    assert cut and received < SIZE and took < STALL + 3, (received, cut, took)
    assert await full_download(site, download_path(rollout, "jc_reader_2")) == built.sha256
    fleet = (await site.admin.get("/api/v1/jump-clients/fleet")).json()
    assert (fleet["failed"], fleet["upgrading"]) == (1, 0), fleet  # its place is free
