"""The web console's page (`/console`) and its POST on the site served by its own
listeners (uvicorn, TLS), signed in with a browser's cookie; the terminal WebSocket is
joined with the token the page's POST gave, as the page's script does. The gateway is
the recorder of tests/integration/test_sessions.py."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from bastion.access_console import protocol as console
from tests.integration.test_sessions import (
    HOST,
    PASSWORD,
    Site,
    add_account,
    add_client,
    agent_joins,
    console_joins,
    representative,
    site,
    site_says,
)
from tests.support import web

__all__ = ["site"]
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
ERROR = re.compile(r'id="error-message">([^<]*)<')


@contextlib.asynccontextmanager
async def signed_in(site: Site, username: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser signed in at /login: the web session's cookie."""
    async with site.client() as browser:
        page = await browser.get("/login")
        answer = await browser.post(
            "/login",
            data={"csrf_token": web.csrf_of(page), "username": username, "password": PASSWORD},
        )
        assert answer.status_code == 303, answer.text
        yield browser


async def start(browser: httpx.AsyncClient, **fields: object) -> httpx.Response:
    page = await browser.get("/console")
    data = {"csrf_token": web.csrf_of(page), **{k: str(v) for k, v in fields.items()}}
    return await browser.post("/console/sessions", data=data)


def message_of(answer: httpx.Response) -> str:
    found = ERROR.search(answer.text)
    assert found, answer.text
    return found[1]


async def test_the_page_lists_only_permitted_items_and_its_post_needs_csrf_and_a_cookie(
    site: Site,
) -> None:
    rep = await representative(site)
    add_client(site, "db-01", group="databases")
    add_client(site, "off-01", online=False)
    async with site.client() as anonymous:
        answer = await anonymous.get("/console")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        data = {"csrf_token": "x", "jump_item_id": str(rep.client_row)}
        assert (await anonymous.post("/console/sessions", data=data)).status_code == 403
    async with site.client(rep.token) as console_token:  # a console token is no cookie
        console_token.cookies.set("bastion_session", rep.token)
        assert (await console_token.get("/console")).status_code == 303
    async with signed_in(site, "rep") as browser:
        page = await browser.get("/console")
        assert page.status_code == 200
        assert "rep-web-01" in page.text and "off-01" in page.text and "db-01" not in page.text
        assert "offline" in page.text and "disabled" in page.text
        assert 'src="/static/web-console.js"' in page.text
        unsent = await browser.post("/console/sessions", data={"jump_item_id": rep.client_row})
        assert unsent.status_code == 403 and "not sent from this site" in message_of(unsent)
        reload = await browser.get("/console/sessions")
        assert reload.status_code == 303 and reload.headers["location"] == "/console"
        for path in ("/static/vendor/xterm/xterm.js", "/static/vendor/xterm/addon-fit.js"):
            assert (await browser.get(path)).status_code == 200, path
    assert site.gateway.commands == []


async def test_the_post_opens_a_session_whose_token_joins_the_terminal(site: Site) -> None:
    rep = await representative(site)
    async with signed_in(site, "rep") as browser:
        answer = await start(browser, jump_item_id=rep.client_row, cols=100, rows=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    opened = console.SessionOpened.model_validate(answer.json())
    begun = site.gateway.last()
    assert (begun.cols, begun.rows) == (100, 30)
    async with (
        site.websocket(opened.terminal_path) as term,
        site.websocket(f"/agent/v1/sessions/{begun.session_id}") as agent,
    ):
        await console_joins(term, opened)
        await agent_joins(agent, rep, begun)
        assert isinstance(await site_says(term), console.Started)
        await agent.send(b"hello-42\r\n")
        assert await term.recv() == b"hello-42\r\n"
        await term.send(console.write(console.End()))
    listed = (await site.admin.get("/api/v1/sessions")).json()
    assert listed["sessions"][0]["username"] == "rep"


async def test_a_page_of_another_origin_is_refused_the_terminal(site: Site) -> None:
    rep = await representative(site)
    async with signed_in(site, "rep") as browser:
        answer = await start(browser, jump_item_id=rep.client_row, cols=80, rows=24)
    opened = console.SessionOpened.model_validate(answer.json())
    url = f"wss://{HOST}:{site.port}{opened.terminal_path}"
    for foreign in ("https://attacker.example", f"http://{HOST}:{site.port}", "null"):
        async with connect(url, ssl=site.tls, origin=Origin(foreign)) as term:
            with pytest.raises(ConnectionClosed) as closed:  # before it may say anything
                await term.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "may not open a terminal" in closed.value.rcvd.reason
    own = Origin(f"https://{HOST}:{site.port}")
    begun = site.gateway.last()
    async with (
        connect(url, ssl=site.tls, origin=own) as term,
        site.websocket(f"/agent/v1/sessions/{begun.session_id}") as agent,
    ):
        await console_joins(term, opened)  # the refused pages did not spend the token
        await agent_joins(agent, rep, begun)
        assert isinstance(await site_says(term), console.Started)


async def test_refusals_show_the_sites_message_and_extremes_are_4xx(site: Site) -> None:
    rep = await representative(site)
    other = add_client(site, "db-01", group="databases")
    offline = add_client(site, "off-01", online=False)
    behind = add_client(site, "old-01", version="0.9.0")
    revoked = add_client(site, "gone-01", revoked_at=datetime.now(UTC))
    async with signed_in(site, "rep") as browser:
        cases = {
            other: (403, "databases"),
            offline: (409, "offline"),
            behind: (409, "upgrade queue"),
            revoked: (409, "revoked"),
            2**63 - 1: (404, "Jump Client"),
        }
        for row, (status, words) in cases.items():
            answer = await start(browser, jump_item_id=row)
            assert answer.status_code == status, answer.text
            assert words in message_of(answer), message_of(answer)
        for fields in (
            {"jump_item_id": 2**63},
            {"jump_item_id": 0},
            {"jump_item_id": "٣"},
            {"jump_item_id": "ünï"},
            {"jump_item_id": rep.client_row, "cols": 0},
            {"jump_item_id": rep.client_row, "rows": 2**63},
            {},
        ):
            answer = await start(browser, **fields)
            assert answer.status_code == 422, (fields, answer.text)
            assert message_of(answer)
    assert site.gateway.commands == []


async def test_an_administrator_sees_every_jump_client(site: Site) -> None:
    await representative(site)
    add_client(site, "db-01", group="databases")
    add_account(site, "chief", role="administrator")
    async with signed_in(site, "chief") as browser:
        page = await browser.get("/console")
    assert "rep-web-01" in page.text and "db-01" in page.text
    assert 'href="/console"' in page.text  # in the navigation
