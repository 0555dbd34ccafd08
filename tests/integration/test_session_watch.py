"""Watching a session live: an administrator's read-only view over its own WebSocket, on
the site served by its own listeners (uvicorn, TLS). The gateway is the recorder of
tests/integration/test_sessions.py; the Jump Client's end is played by its own
WebSocket, speaking the agents' session protocol."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from bastion.access_console import protocol as console
from bastion.access_console.errors import WatchRefusedError
from bastion.access_console.terminal import watch as console_watch
from bastion.agents.protocol import Resize, SessionExit
from bastion.sessions.relay import MAX_WATCHERS, WATCH_QUEUE
from tests.integration.test_sessions import (
    CODEC,
    HOST,
    PASSWORD,
    Rep,
    Site,
    add_account,
    agent_joins,
    closed_with,
    console_joins,
    open_session,
    representative,
    sign_in,
    site,
    site_says,
)
from tests.support import web

__all__ = ["site"]
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@dataclass
class Live:
    """A session in progress: the representative's terminal and the Jump Client's end."""

    opened: console.SessionOpened
    term: ClientConnection
    agent: ClientConnection


@contextlib.asynccontextmanager
async def live_session(site: Site, rep: Rep) -> AsyncIterator[Live]:
    opened = await open_session(site, rep, cols=100, rows=30)
    begun = site.gateway.last()
    async with (
        site.websocket(opened.terminal_path) as term,
        site.websocket(f"/agent/v1/sessions/{begun.session_id}") as agent,
    ):
        await console_joins(term, opened)
        await agent_joins(agent, rep, begun)
        assert isinstance(await site_says(term), console.Started)
        yield Live(opened, term, agent)


async def administrator(site: Site, name: str = "boss") -> str:
    add_account(site, name, "administrator")
    return await sign_in(site, name)


async def watch_token(site: Site, token: str, session_id: str) -> console.WatchOpened:
    async with site.client(token) as client:
        answer = await client.post(f"{console.CONSOLE_API}/live-sessions/{session_id}/watch")
    assert answer.status_code == 201, answer.text
    return console.WatchOpened.model_validate(answer.json())


async def shows(ws: ClientConnection, wanted: bytes) -> bytes:
    """What `ws` receives in binary frames until `wanted` has appeared."""
    seen = b""
    while wanted not in seen:
        frame = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(frame, bytes), frame
        seen += frame
    return seen


async def test_a_watcher_sees_the_screen_so_far_then_what_follows_and_the_end(
    site: Site,
) -> None:
    rep = await representative(site)
    boss = await administrator(site)
    async with live_session(site, rep) as live:
        await live.agent.send(b"before the watch\r\n")
        assert await live.term.recv() == b"before the watch\r\n"
        async with site.client(boss) as client:
            listed = (await client.get(f"{console.CONSOLE_API}/live-sessions")).json()
        assert [(s["session_id"], s["representative"], s["watchers"]) for s in listed] == [
            (live.opened.session_id, "rep", 0)
        ]
        opened = await watch_token(site, boss, live.opened.session_id)
        async with site.websocket(opened.watch_path) as watcher:
            await watcher.send(console.write(console.ConsoleHello(token=opened.token)))
            said = await site_says(watcher)
            assert isinstance(said, console.Watching) and (said.cols, said.rows) == (100, 30)
            assert "rep" in said.title
            assert b"before the watch" in await shows(watcher, b"before the watch")
            await live.agent.send(b"while watched\r\n")
            assert await live.term.recv() == b"while watched\r\n"
            assert b"while watched" in await shows(watcher, b"while watched")
            await live.term.send(console.write(console.Resize(cols=120, rows=40)))
            assert isinstance(CODEC.read_session_site(await live.agent.recv()), Resize)
            assert await site_says(watcher) == console.Resized(cols=120, rows=40)
            await live.agent.send(CODEC.write(SessionExit(code=3)))
            assert await site_says(watcher) == console.Exited(code=3)
            assert (await closed_with(watcher))[0] == 1000
    audit = (await site.admin.get("/api/v1/audit", params={"action": "sessions.watch"})).json()
    assert any(e["actor"] == "boss" for e in audit["entries"]), audit


async def test_the_console_watches_until_the_session_ends(site: Site) -> None:
    rep = await representative(site)
    boss = await administrator(site)
    async with live_session(site, rep) as live:
        await live.agent.send(b"on screen\r\n")
        await live.term.recv()
        opened = await watch_token(site, boss, live.opened.session_id)
        url = f"wss://{HOST}:{site.port}{opened.watch_path}"
        read, write = os.pipe()
        told: list[str] = []
        watching = asyncio.create_task(
            console_watch(url, site.tls, opened.token, write, told.append)
        )
        for _ in range(100):
            if told:
                break
            await asyncio.sleep(0.05)
        await live.agent.send(CODEC.write(SessionExit(code=0)))
        outcome = await asyncio.wait_for(watching, 10)
        os.close(write)
        with open(read, "rb") as shown:
            assert b"on screen" in shown.read()
    assert told and told[0].startswith("Watching rep on rep-web-01")
    assert (outcome.code, outcome.status) == (0, 0)
    with pytest.raises(WatchRefusedError, match="no such session live"):  # it ended
        await console_watch(url, site.tls, opened.token, told=told.append)


async def test_only_administrators_watch_and_a_token_serves_once(site: Site) -> None:
    rep = await representative(site)
    boss = await administrator(site)
    async with live_session(site, rep) as live:
        session_id = live.opened.session_id
        async with site.client(rep.token) as client:
            for answer in (
                await client.get(f"{console.CONSOLE_API}/live-sessions"),
                await client.post(f"{console.CONSOLE_API}/live-sessions/{session_id}/watch"),
            ):
                assert answer.status_code == 403, answer.text
                assert "administrators" in answer.json()["error"]["message"]
        async with site.client(boss) as client:
            unknown = "0" * 8 + "-0000-4000-8000-" + "0" * 12
            missing = await client.post(f"{console.CONSOLE_API}/live-sessions/{unknown}/watch")
            assert (
                missing.status_code == 404 and "in progress" in missing.json()["error"]["message"]
            )
            for odd in ("9" * 40, "ünïcødé", "a" * 300):
                answer = await client.post(f"{console.CONSOLE_API}/live-sessions/{odd}/watch")
                assert 400 <= answer.status_code < 500, (odd, answer.status_code)
        opened = await watch_token(site, boss, session_id)
        async with site.websocket(opened.watch_path) as first:
            await first.send(console.write(console.ConsoleHello(token=opened.token)))
            assert isinstance(await site_says(first), console.Watching)
            async with site.websocket(opened.watch_path) as again:
                await again.send(console.write(console.ConsoleHello(token=opened.token)))
                code, reason = await closed_with(again)
            assert code == 1008 and "used or expired" in reason
            async with site.websocket(opened.watch_path) as borrowed:  # the console's token
                await borrowed.send(console.write(console.ConsoleHello(token=live.opened.token)))
                assert (await closed_with(borrowed))[0] == 1008
            await first.send(b"typed by the watcher")
            code, reason = await closed_with(first)
            assert code == 1008 and "read-only" in reason
        await live.agent.send(b"still going\r\n")  # nothing typed by a watcher reached it
        assert await live.term.recv() == b"still going\r\n"


async def ask_to_watch(site: Site, token: str, session_id: str) -> httpx.Response:
    """One request for a watch token, on a connection of its own."""
    async with site.client(token) as client:
        return await client.post(f"{console.CONSOLE_API}/live-sessions/{session_id}/watch")


async def test_no_more_than_eight_watch_one_session_however_many_ask_at_once(
    site: Site,
) -> None:
    rep = await representative(site)
    boss = await administrator(site)
    async with live_session(site, rep) as live:
        session_id = live.opened.session_id
        asked = MAX_WATCHERS + 5
        answers = await asyncio.gather(
            *(ask_to_watch(site, boss, session_id) for _ in range(asked))
        )
        given = [a for a in answers if a.status_code == 201]
        refused = [a for a in answers if a.status_code != 201]
        assert len(given) == MAX_WATCHERS and len(refused) == asked - MAX_WATCHERS
        for answer in refused:
            assert answer.status_code == 409, answer.text
            assert f"{MAX_WATCHERS} watchers" in answer.json()["error"]["message"]
        tokens = [console.WatchOpened.model_validate(a.json()) for a in given]
        async with contextlib.AsyncExitStack() as stack:
            watchers = await asyncio.gather(
                *(stack.enter_async_context(site.websocket(t.watch_path)) for t in tokens)
            )
            for watcher, opened in zip(watchers, tokens, strict=True):
                await watcher.send(console.write(console.ConsoleHello(token=opened.token)))
            for watcher in watchers:
                assert isinstance(await site_says(watcher), console.Watching)
            assert len(site.rendezvous.live[session_id].watchers) == MAX_WATCHERS
            full = await ask_to_watch(site, boss, session_id)
            assert full.status_code == 409 and "watchers" in full.json()["error"]["message"]
            await live.agent.send(b"seen by all\r\n")  # the session goes on, watched
            assert await live.term.recv() == b"seen by all\r\n"
            for watcher in watchers:
                assert b"seen by all" in await shows(watcher, b"seen by all")
            await watchers[0].close()
            for _ in range(50):  # the site hears that one leave
                if len(site.rendezvous.live[session_id].watchers) < MAX_WATCHERS:
                    break
                await asyncio.sleep(0.1)
            again = await ask_to_watch(site, boss, session_id)
            assert again.status_code == 201, again.text
        await live.term.send(b"still here")
        assert await live.agent.recv() == b"still here"


async def test_a_watcher_that_stops_reading_is_dropped_and_the_session_goes_on(
    site: Site,
) -> None:
    rep = await representative(site)
    boss = await administrator(site)
    async with live_session(site, rep) as live:
        opened = await watch_token(site, boss, live.opened.session_id)
        url = f"wss://{HOST}:{site.port}{opened.watch_path}"
        # A watcher that reads nothing after its first message, with a small receive
        # buffer (the kernel would otherwise take tens of MiB for it).
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        raw.connect((HOST, site.port))
        async with connect(url, ssl=site.tls, sock=raw, max_queue=1, compression=None) as stalled:
            await stalled.send(console.write(console.ConsoleHello(token=opened.token)))
            assert isinstance(await site_says(stalled), console.Watching)
            stalled.transport.pause_reading()
            await flood_until_dropped(site, live)
            stalled.transport.abort()


async def flood_until_dropped(site: Site, live: Live) -> None:
    """Output through the session until the site drops its watcher; the session goes on."""
    chunk = os.urandom(16_000)  # as it would go over the wire: nothing to compress
    watchers = site.rendezvous.live[live.opened.session_id].watchers
    sent = 0
    while watchers and sent < 64 * 2**20:  # past what the sockets' buffers hold
        await live.agent.send(chunk)
        assert await asyncio.wait_for(live.term.recv(), 10) == chunk
        sent += len(chunk)
    assert watchers == [], f"the watcher was not dropped after {sent} bytes"
    assert sent >= WATCH_QUEUE * len(chunk)
    await live.agent.send(b"after the drop\r\n")
    assert await live.term.recv() == b"after the drop\r\n"


async def test_the_reports_page_watches_and_ends_for_administrators_only(site: Site) -> None:
    rep = await representative(site)
    add_account(site, "boss", "administrator")
    async with live_session(site, rep) as live:
        session_id = live.opened.session_id
        page_path = f"/login/reports/{session_id}/watch"

        def browse(username: str) -> dict[str, httpx.Response]:
            with httpx.Client(base_url=site.url, verify=site.tls, timeout=20) as browser:
                web.sign_in(browser, username, PASSWORD)
                answers = {"page": browser.get(page_path)}
                if answers["page"].status_code == 200:
                    answers["token"] = web.submit(browser, page_path, page_path)
                    answers["forged"] = browser.post(page_path, data={"csrf_token": "forged"})
                    unknown = "0" * 8 + "-0000-4000-8000-" + "0" * 12
                    answers["unknown"] = browser.get(f"/login/reports/{unknown}/watch")
                    answers["odd"] = browser.get("/login/reports/ünïcødé/watch")
                    answers["end"] = web.submit(
                        browser, "/login/reports", f"/login/reports/{session_id}/end"
                    )
                return answers

        theirs = await asyncio.to_thread(browse, "rep")
        assert theirs["page"].status_code == 403
        ours = await asyncio.to_thread(browse, "boss")
        assert ours["page"].status_code == 200 and "rep-web-01" in ours["page"].text
        assert ours["token"].status_code == 200, ours["token"].text
        assert console.WatchOpened.model_validate(ours["token"].json()).session_id == session_id
        assert ours["forged"].status_code == 403
        assert ours["unknown"].status_code == 404 and ours["odd"].status_code in (404, 422)
        assert ours["end"].status_code == 303
        assert await site_says(live.term) == console.Ended(reason="ended by boss")
