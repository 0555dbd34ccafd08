"""Sessions end to end in one process: the site's web app served by the appliance's own
listeners (uvicorn, TLS), a real WebSocket client playing the access console and another
playing the Jump Client's session connection, both speaking the real protocol modules.
The gateway is replaced by a recorder of the commands it would deliver."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bastion.access_console import protocol as console
from bastion.accounts import service as accounts
from bastion.accounts.models import Account
from bastion.accounts.service import AccountsSetup
from bastion.agents.protocol import (
    Codec,
    Command,
    Resize,
    SessionEnd,
    SessionExit,
    SessionHello,
    StartSession,
)
from bastion.jump_clients.models import JumpClientRow
from bastion.platform import build
from bastion.platform.principals import Actor
from bastion.platform.runtime import Runtime
from bastion.sessions.relay import Rendezvous
from tests.support import web
from tests.support.served_app import HOST, served_app

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
SITE = "sessions.example.test"

ACTOR = Actor(None, "test")
PASSWORD = "Correct-Horse-Battery-9"
CODEC = Codec()


@dataclass
class Gateway:
    """Stands in for the gateway processes: records each command, says whether it was taken."""

    holds: bool = True
    commands: list[tuple[str, Command]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish(self, client_id: str, command: Command) -> bool:
        self.commands.append((client_id, command))
        self.arrived.set()
        return self.holds

    def last(self) -> StartSession:
        body = self.commands[-1][1].body
        assert isinstance(body, StartSession)
        return body


@dataclass
class Site:
    runtime: Runtime
    port: int
    tls: ssl.SSLContext
    gateway: Gateway
    admin: httpx.AsyncClient
    anchors: str = ""
    """The PEM of the CA that issued the listener's certificate (for `HOST` and `SITE`)."""

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def rendezvous(self) -> Rendezvous:
        return self.runtime.part(Rendezvous)

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, verify=self.tls, headers=headers, timeout=20)

    def websocket(self, path: str) -> Any:
        return connect(f"wss://{HOST}:{self.port}{path}", ssl=self.tls, open_timeout=10)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with served_app(tmp_path, SITE, "t", gateway_listen="127.0.0.1:8444") as app:
        gateway = Gateway()
        app.runtime.part(Rendezvous).publish = gateway.publish
        admin = httpx.AsyncClient(
            base_url=app.url,
            verify=app.tls,
            timeout=20,
            headers={"Authorization": app.authorization},
        )
        try:
            yield Site(app.runtime, app.port, app.tls, gateway, admin, app.anchors)
        finally:
            await admin.aclose()
            await app.runtime.part(Rendezvous).end_all("the test ended")


def add_account(site: Site, username: str, role: str = "representative") -> int:
    hasher = site.runtime.part(AccountsSetup).hasher
    with site.runtime.uow() as uow:
        made = accounts.create_account(uow, hasher, ACTOR, username, PASSWORD, role, username)
        uow.session.get(Account, made.id).must_change_password = False  # type: ignore[union-attr]
        uow.commit()
    return made.id


def add_client(site: Site, name: str, group: str = "ops", **columns: Any) -> int:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "client_id": f"jc_{name.replace('-', '_')}",
        "public_key": b"k" * 32,
        "name": name,
        "mode": "active",
        "jump_group": group,
        "tag": "",
        "comments": "",
        "endpoint": name,
        "hostname": f"{name}.internal",
        "fqdn": "",
        "os": "Linux",
        "console_user": "",
        "version": build.site_version(),
        "revision": "",
        "anchors": "[]",
        "statistics": "{}",
        "address": "",
        "online": True,
        "installed_at": now,
        "last_seen_at": now,
    }
    values.update(columns)
    with site.runtime.uow() as uow:
        row = JumpClientRow(**values)
        uow.session.add(row)
        uow.commit()
        return row.id


async def sign_in(site: Site, username: str) -> str:
    async with site.client() as client:
        answer = await client.post(
            f"{console.CONSOLE_API}/sign-in", json={"username": username, "password": PASSWORD}
        )
    assert answer.status_code == 200, answer.text
    signed = console.SignedIn.model_validate(answer.json())
    assert signed.username == username
    return signed.token


async def grant(site: Site, account_id: int, *groups: str) -> None:
    answer = await site.admin.put(
        f"/api/v1/accounts/{account_id}/jump-groups", json={"jump_groups": list(groups)}
    )
    assert answer.status_code == 200, answer.text


@dataclass
class Rep:
    token: str
    client_row: int
    client_id: str


async def representative(site: Site, name: str = "rep") -> Rep:
    account = add_account(site, name)
    await grant(site, account, "ops")
    row = add_client(site, f"{name}-web-01")
    return Rep(await sign_in(site, name), row, f"jc_{name}_web_01")


async def open_session(site: Site, rep: Rep, **body: Any) -> console.SessionOpened:
    async with site.client(rep.token) as client:
        answer = await client.post(
            f"{console.CONSOLE_API}/sessions", json={"jump_item_id": rep.client_row, **body}
        )
    assert answer.status_code == 201, answer.text
    return console.SessionOpened.model_validate(answer.json())


async def console_joins(ws: ClientConnection, opened: console.SessionOpened) -> None:
    await ws.send(console.write(console.ConsoleHello(token=opened.token)))


async def agent_joins(ws: ClientConnection, rep: Rep, start: StartSession) -> None:
    hello = SessionHello(session_id=start.session_id, client_id=rep.client_id, token=start.token)
    await ws.send(CODEC.write(hello))


async def site_says(ws: ClientConnection) -> console.FromSite:
    frame = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(frame, str), frame
    return console.read_from_site(frame)


async def closed_with(ws: ClientConnection) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code, ws.close_reason or ""


async def session_record(site: Site, session_id: str) -> dict[str, Any]:
    for _ in range(100):
        answer = await site.admin.get(f"/api/v1/sessions/{session_id}")
        assert answer.status_code == 200, answer.text
        if not answer.json()["live"]:
            return dict(answer.json())
        await asyncio.sleep(0.05)
    raise AssertionError("the session did not end")


async def recording(
    site: Site, session_id: str, tmp_path: Path
) -> tuple[dict[str, Any], list[Any]]:
    answer = await site.admin.get(f"/api/v1/sessions/{session_id}/recording")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-asciicast")
    (tmp_path / "session.cast").write_bytes(answer.content)
    header, *events = [json.loads(line) for line in answer.text.splitlines()]
    return header, events


# -- the session itself ------------------------------------------------------------------------


async def test_a_session_relays_both_ways_records_and_ends_with_the_exit_code(
    site: Site, tmp_path: Path
) -> None:
    rep = await representative(site)
    opened = await open_session(site, rep, cols=90, rows=30)
    start = site.gateway.last()
    assert site.gateway.commands[-1][0] == rep.client_id
    assert (start.session_id, start.cols, start.rows) == (opened.session_id, 90, 30)
    assert start.rendezvous == f"{SITE}:8443"
    assert opened.terminal_path == f"/api/v1/console/sessions/{opened.session_id}/terminal"
    async with (
        site.websocket(opened.terminal_path) as term,
        site.websocket(f"/agent/v1/sessions/{start.session_id}") as agent,
    ):
        await console_joins(term, opened)
        await agent_joins(agent, rep, start)
        assert isinstance(await site_says(term), console.Started)
        await agent.send("café ".encode()[:4])  # "caf" and half of "é"
        await agent.send("café ".encode()[4:] + "→ $ ".encode())
        assert await term.recv() == b"caf\xc3"
        assert await term.recv() == b"\xa9 \xe2\x86\x92 $ "
        await term.send(b"echo hi\r")
        assert await agent.recv() == b"echo hi\r"
        await term.send(console.write(console.Resize(cols=120, rows=40)))
        resize = CODEC.read_session_site(await agent.recv())
        assert isinstance(resize, Resize) and (resize.cols, resize.rows) == (120, 40)
        await agent.send(b"hi\r\n")
        assert await term.recv() == b"hi\r\n"
        await agent.send(CODEC.write(SessionExit(code=3)))
        exited = await site_says(term)
        assert isinstance(exited, console.Exited) and exited.code == 3
        assert (await closed_with(term))[0] == 1000
    record = await session_record(site, opened.session_id)
    assert record["end_reason"] == "the remote shell exited with code 3"
    assert record["username"] == "rep" and record["jump_client_name"] == "rep-web-01"
    assert record["joined_at"] is not None and record["duration_seconds"] >= 0
    assert record["bytes_from_console"] == len(b"echo hi\r")
    assert record["bytes_from_endpoint"] == len("café → $ hi\r\n".encode())
    assert record["input_recorded"] is False
    header, events = await recording(site, opened.session_id, tmp_path)
    assert header["version"] == 2 and (header["width"], header["height"]) == (90, 30)
    assert header["title"] == "rep on rep-web-01" and "TERM" in header["env"]
    assert [e[1:] for e in events] == [
        ["o", "caf"],
        ["o", "é → $ "],
        ["r", "120x40"],
        ["o", "hi\r\n"],
    ]
    times = [e[0] for e in events]
    assert times == sorted(times)
    played = subprocess.run(
        [str(Path(sys.executable).with_name("asciinema")), "cat", str(tmp_path / "session.cast")],
        capture_output=True,
        timeout=30,
    )
    assert played.returncode == 0, played.stderr
    assert "café → $ hi" in played.stdout.decode()


async def test_input_is_recorded_when_the_site_asks(site: Site, tmp_path: Path) -> None:
    answer = await site.admin.put("/api/v1/sessions/settings", json={"record_input": True})
    assert answer.json() == {"record_input": True}
    rep = await representative(site)
    opened = await open_session(site, rep)
    start = site.gateway.last()
    async with (
        site.websocket(f"/agent/v1/sessions/{start.session_id}") as agent,
        site.websocket(opened.terminal_path) as term,
    ):
        await agent_joins(agent, rep, start)  # the agent first, this time
        await agent.send(b"$ ")  # held until the console is here
        await console_joins(term, opened)
        assert isinstance(await site_says(term), console.Started)
        assert await term.recv() == b"$ "
        await term.send("ü".encode()[:1])
        await term.send("ü".encode()[1:] + b"\r")
        assert await agent.recv() == b"\xc3"
        assert await agent.recv() == b"\xbc\r"
        await term.send(console.write(console.End()))
        ended = CODEC.read_session_site(await agent.recv())
        assert isinstance(ended, SessionEnd) and ended.reason == "ended by the representative"
        said = await site_says(term)
        assert isinstance(said, console.Ended) and said.reason == "ended by the representative"
    record = await session_record(site, opened.session_id)
    assert record["input_recorded"] is True
    _, events = await recording(site, opened.session_id, tmp_path)
    assert [e[1:] for e in events] == [["o", "$ "], ["i", "ü\r"]]


async def test_a_replayed_or_wrong_token_is_refused_and_nothing_is_relayed(site: Site) -> None:
    rep = await representative(site)
    opened = await open_session(site, rep)
    start = site.gateway.last()
    agent_path = f"/agent/v1/sessions/{start.session_id}"
    async with site.websocket(opened.terminal_path) as term, site.websocket(agent_path) as agent:
        await console_joins(term, opened)
        await agent_joins(agent, rep, start)
        assert isinstance(await site_says(term), console.Started)
        async with site.websocket(opened.terminal_path) as again:
            await console_joins(again, opened)
            assert await closed_with(again) == (1008, "the session's token was used already")
        async with site.websocket(agent_path) as again:
            await agent_joins(again, rep, start)
            assert await closed_with(again) == (1008, "the session's token was used already")
        async with site.websocket(opened.terminal_path) as wrong:
            await wrong.send(console.write(console.ConsoleHello(token=start.token)))
            assert await closed_with(wrong) == (1008, "the token is not this session's")
        async with site.websocket(agent_path) as other:
            hello = SessionHello(
                session_id=start.session_id, client_id="jc_someone_else", token=start.token
            )
            await other.send(CODEC.write(hello))
            assert await closed_with(other) == (1008, "this session is for another Jump Client")
        async with site.websocket(opened.terminal_path) as rude:
            await rude.send(b"keys before hello")
            code, reason = await closed_with(rude)
            assert code == 1002 and "not a valid message" in reason
        unknown = "/api/v1/console/sessions/00000000-0000-4000-8000-000000000000/terminal"
        async with site.websocket(unknown) as nowhere:
            await console_joins(nowhere, opened)
            assert await closed_with(nowhere) == (
                1008,
                "there is no such session live on this appliance",
            )
        await term.send(b"still mine")
        assert await agent.recv() == b"still mine"


async def test_a_jump_client_that_never_joins_ends_the_session(site: Site) -> None:
    site.rendezvous.join_timeout = 0.5
    rep = await representative(site)
    opened = await open_session(site, rep)
    async with site.websocket(opened.terminal_path) as term:
        await console_joins(term, opened)
        said = await site_says(term)
        assert isinstance(said, console.Ended) and said.reason == "the Jump Client did not answer"
    record = await session_record(site, opened.session_id)
    assert record["end_reason"] == "the Jump Client did not answer"
    assert record["joined_at"] is None and record["recording_sha256"] is None
    answer = await site.admin.get(f"/api/v1/sessions/{opened.session_id}/recording")
    assert answer.status_code == 404
    start = site.gateway.last()
    async with site.websocket(f"/agent/v1/sessions/{start.session_id}") as late:
        await agent_joins(late, rep, start)
        assert (await closed_with(late))[0] == 1008


async def test_an_administrator_ends_a_live_session(site: Site) -> None:
    rep = await representative(site)
    opened = await open_session(site, rep)
    start = site.gateway.last()
    agent_path = f"/agent/v1/sessions/{start.session_id}"
    async with site.websocket(opened.terminal_path) as term, site.websocket(agent_path) as agent:
        await console_joins(term, opened)
        await agent_joins(agent, rep, start)
        assert isinstance(await site_says(term), console.Started)
        answer = await site.admin.post(f"/api/v1/sessions/{opened.session_id}/end")
        assert answer.status_code == 200, answer.text
        assert answer.json()["end_reason"] == "ended by api:t"
        said = await site_says(term)
        assert isinstance(said, console.Ended) and said.reason == "ended by api:t"
        ended = CODEC.read_session_site(await agent.recv())
        assert isinstance(ended, SessionEnd)
    again = await site.admin.post(f"/api/v1/sessions/{opened.session_id}/end")
    assert again.status_code == 409


async def test_the_console_going_away_ends_the_session_for_the_jump_client(site: Site) -> None:
    rep = await representative(site)
    opened = await open_session(site, rep)
    start = site.gateway.last()
    async with site.websocket(f"/agent/v1/sessions/{start.session_id}") as agent:
        async with site.websocket(opened.terminal_path) as term:
            await console_joins(term, opened)
            await agent_joins(agent, rep, start)
            assert isinstance(await site_says(term), console.Started)
        ended = CODEC.read_session_site(await asyncio.wait_for(agent.recv(), 10))
        assert isinstance(ended, SessionEnd) and ended.reason == "the console disconnected"
    record = await session_record(site, opened.session_id)
    assert record["end_reason"] == "the console disconnected"


async def test_a_console_that_stops_reading_stops_the_endpoint_being_read(site: Site) -> None:
    """Bounded buffering: output piles up nowhere but in the sockets' own buffers."""
    rep = await representative(site)
    opened = await open_session(site, rep)
    start = site.gateway.last()
    agent_path = f"/agent/v1/sessions/{start.session_id}"
    async with site.websocket(opened.terminal_path) as term, site.websocket(agent_path) as agent:
        await console_joins(term, opened)
        await agent_joins(agent, rep, start)
        assert isinstance(await site_says(term), console.Started)
        term.transport.pause_reading()  # the console stops reading
        chunk = os.urandom(60_000)  # incompressible: the connections deflate what they carry
        sent = 0
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3):
                while True:
                    await agent.send(chunk)
                    sent += len(chunk)
        assert sent < 16 * 2**20, "the site kept reading although the console did not"
        term.transport.resume_reading()
        await term.send(console.write(console.End()))
        assert (await closed_with(term))[0] == 1000
        assert (await closed_with(agent))[0] == 1000


# -- who may jump where, and why not ------------------------------------------------------------


async def test_a_representative_sees_and_opens_only_what_their_jump_groups_allow(
    site: Site,
) -> None:
    rep = await representative(site)
    other = add_client(site, "db-01", group="databases")
    loose = add_client(site, "loose-01", group="")
    async with site.client(rep.token) as client:
        items = (await client.get(f"{console.CONSOLE_API}/jump-items")).json()
        assert [i["name"] for i in items] == ["rep-web-01"]
        item = console.JumpItem.model_validate(items[0])
        assert item.jumpable and item.status == "online" and item.group == "ops"
        for row, status in ((other, 403), (loose, 403), (2**63 - 1, 404)):
            answer = await client.post(
                f"{console.CONSOLE_API}/sessions", json={"jump_item_id": row}
            )
            assert answer.status_code == status, answer.text
        refused = await client.post(f"{console.CONSOLE_API}/sessions", json={"jump_item_id": other})
        assert "databases" in refused.json()["error"]["message"]
        for body in ({"jump_item_id": 2**63}, {"jump_item_id": 0}, {"cols": 80}):
            answer = await client.post(f"{console.CONSOLE_API}/sessions", json=body)
            assert answer.status_code == 422, answer.text
    admin_id = add_account(site, "chief", role="administrator")
    async with site.client(await sign_in(site, "chief")) as client:
        items = (await client.get(f"{console.CONSOLE_API}/jump-items")).json()
        assert sorted(i["name"] for i in items) == ["db-01", "loose-01", "rep-web-01"]
    answer = await site.admin.get(f"/api/v1/accounts/{admin_id}/jump-groups")
    assert answer.json() == {"jump_groups": []}
    assert site.gateway.commands == []  # no refused jump reached a Jump Client


async def test_jumps_that_cannot_start_are_refused_with_their_reason(site: Site) -> None:
    rep = await representative(site)
    revoked = add_client(site, "gone-01", revoked_at=datetime.now(UTC))
    offline = add_client(site, "off-01", online=False)
    behind = add_client(site, "old-01", version="0.9.0")
    ancient = add_client(site, "odd-01", version="weird")
    cases = {
        revoked: (409, "revoked"),
        offline: (409, "offline"),
        behind: (409, "first in the upgrade queue"),
        ancient: (409, "upgrade"),
    }
    async with site.client(rep.token) as client:
        items = {
            i["name"]: i for i in (await client.get(f"{console.CONSOLE_API}/jump-items")).json()
        }
        assert items["old-01"]["status"] == "upgrade_pending" and not items["old-01"]["jumpable"]
        assert "revoked" in items["gone-01"]["reason"]
        for row, (status, words) in cases.items():
            answer = await client.post(
                f"{console.CONSOLE_API}/sessions", json={"jump_item_id": row}
            )
            assert answer.status_code == status, answer.text
            assert words in answer.json()["error"]["message"]
    with site.runtime.uow() as uow:
        assert uow.session.get(JumpClientRow, behind).upgrade_first is True  # type: ignore[union-attr]
    site.gateway.holds = False
    async with site.client(rep.token) as client:
        answer = await client.post(
            f"{console.CONSOLE_API}/sessions", json={"jump_item_id": rep.client_row}
        )
        assert answer.status_code == 409 and "not connected" in answer.text
    listed = (await site.admin.get("/api/v1/sessions")).json()
    assert listed["total"] == 1 and "not connected" in listed["sessions"][0]["end_reason"]
    site.rendezvous.publish = None
    async with site.client(rep.token) as client:
        answer = await client.post(
            f"{console.CONSOLE_API}/sessions", json={"jump_item_id": rep.client_row}
        )
        assert answer.status_code == 503


async def test_console_tokens_and_web_sessions_do_not_stand_in_for_each_other(site: Site) -> None:
    rep = await representative(site)
    async with site.client() as browser:
        browser.cookies.set("bastion_session", rep.token)
        page = await browser.get("/login/home", follow_redirects=False)
        assert page.status_code in (302, 303, 307) and "/login" in page.headers["location"]
    async with site.client(rep.token) as client:
        assert (await client.get("/api/v1/sessions")).status_code == 401
    async with site.client(site.admin.headers["Authorization"].split()[1]) as api:
        assert (await api.get(f"{console.CONSOLE_API}/jump-items")).status_code == 401
    async with site.client(rep.token) as client:
        assert (await client.post(f"{console.CONSOLE_API}/sign-out")).status_code == 204
        assert (await client.get(f"{console.CONSOLE_API}/jump-items")).status_code == 401
    async with site.client() as client:
        about = console.About.model_validate(
            (await client.get(f"{console.CONSOLE_API}/about")).json()
        )
        assert about.site == SITE and about.site_version == build.site_version()
        wrong = await client.post(
            f"{console.CONSOLE_API}/sign-in", json={"username": "ünïcødé", "password": "pässwörd"}
        )
        assert wrong.status_code == 401
        for _ in range(8):
            wrong = await client.post(
                f"{console.CONSOLE_API}/sign-in", json={"username": "rep", "password": "nope"}
            )
        assert wrong.status_code == 429, "the web sign-in's lockout holds here too"


async def test_reports_filter_and_refuse_extremes(site: Site) -> None:
    rep = await representative(site)
    opened = await open_session(site, rep)
    await site.admin.post(f"/api/v1/sessions/{opened.session_id}/end")
    api = site.admin
    assert (await api.get("/api/v1/sessions", params={"username": "REP"})).json()["total"] == 1
    assert (await api.get("/api/v1/sessions", params={"username": "nobody"})).json()["total"] == 0
    assert (await api.get("/api/v1/sessions", params={"endpoint": "web-01.int"})).json()[
        "total"
    ] == 1
    assert (await api.get("/api/v1/sessions", params={"endpoint": "ünï"})).json()["total"] == 0
    later = {"started_from": "2999-01-01T00:00:00Z"}
    assert (await api.get("/api/v1/sessions", params=later)).json()["total"] == 0
    by_client = {"jump_client_id": rep.client_row}
    assert (await api.get("/api/v1/sessions", params=by_client)).json()["total"] == 1
    for path in (
        "/api/v1/sessions/not-a-uuid",
        "/api/v1/sessions/ünï/recording",
        f"/api/v1/accounts/{2**63}/jump-groups",
        f"/api/v1/sessions?jump_client_id={2**63}",
    ):
        assert (await api.get(path)).status_code == 422, path
    missing = "/api/v1/sessions/00000000-0000-4000-8000-000000000000"
    assert (await api.get(missing)).status_code == 404
    assert (await api.post(missing + "/end")).status_code == 404
    assert (await api.get(f"/api/v1/accounts/{2**63 - 1}/jump-groups")).status_code == 404
    answer = await api.put(
        f"/api/v1/accounts/{2**63 - 1}/jump-groups", json={"jump_groups": ["ops"]}
    )
    assert answer.status_code == 404
    account = add_account(site, "other")
    answer = await api.put(
        f"/api/v1/accounts/{account}/jump-groups", json={"jump_groups": ["Ünïcødé  ops", "ops"]}
    )
    assert answer.json() == {"jump_groups": ["ops", "Ünïcødé ops"]}
    answer = await api.put(f"/api/v1/accounts/{account}/jump-groups", json={"jump_groups": [" "]})
    assert answer.status_code == 400


async def test_the_reports_page_lists_sessions_with_their_recordings(
    site: Site, tmp_path: Path
) -> None:
    rep = await representative(site)
    opened = await open_session(site, rep)
    start = site.gateway.last()
    async with (
        site.websocket(opened.terminal_path) as term,
        site.websocket(f"/agent/v1/sessions/{start.session_id}") as agent,
    ):
        await console_joins(term, opened)
        await agent_joins(agent, rep, start)
        assert isinstance(await site_says(term), console.Started)
        await agent.send(b"hello from web-01")
        await agent.send(CODEC.write(SessionExit(code=0)))
        await closed_with(term)
    await session_record(site, opened.session_id)
    add_account(site, "boss", role="administrator")

    def browse() -> tuple[httpx.Response, httpx.Response, httpx.Response, httpx.Response]:
        with httpx.Client(base_url=site.url, verify=site.tls, timeout=20) as browser:
            web.sign_in(browser, "boss", PASSWORD)
            page = browser.get("/login/reports", params={"username": "rep"})
            download = browser.get(f"/login/reports/{opened.session_id}/recording")
            saved = web.submit(
                browser, "/login/reports", "/login/reports/settings", record_input="on"
            )
            bad = browser.get("/login/reports", params={"page": 2**63})
            return page, download, browser.get(saved.headers["location"]), bad

    page, download, saved, bad = await asyncio.to_thread(browse)
    assert page.status_code == 200 and "rep-web-01" in page.text
    assert f"/login/reports/{opened.session_id}/recording" in page.text
    assert "the remote shell exited with code 0" in page.text
    assert download.status_code == 200 and "hello from web-01" in download.text
    assert saved.status_code == 200 and "checked" in saved.text
    assert bad.status_code == 422
    assert (await site.admin.get("/api/v1/sessions/settings")).json() == {"record_input": True}
    async with site.client(rep.token) as client:  # a representative's token opens no page
        assert (await client.get("/login/reports", follow_redirects=False)).status_code != 200


async def test_an_account_page_shows_and_sets_its_jump_groups(site: Site) -> None:
    rep = add_account(site, "rep")
    add_account(site, "boss", role="administrator")

    def browse() -> httpx.Response:
        with httpx.Client(base_url=site.url, verify=site.tls, timeout=20) as browser:
            web.sign_in(browser, "boss", PASSWORD)
            page = f"/login/users/{rep}"
            saved = web.submit(browser, page, f"{page}/jump-groups", jump_groups="ops\nÜnï db\n")
            assert saved.status_code == 303
            return browser.get(page)

    page = await asyncio.to_thread(browse)
    assert "Jump Groups" in page.text and "ops\nÜnï db</textarea>" in page.text
    answer = await site.admin.get(f"/api/v1/accounts/{rep}/jump-groups")
    assert answer.json() == {"jump_groups": ["ops", "Ünï db"]}


async def test_times_in_report_filters_are_written_times(site: Site) -> None:
    for value in ("0.5", "1700000000", "yesterday"):
        answer = await site.admin.get("/api/v1/sessions", params={"started_from": value})
        assert answer.status_code == 422, value
    for value in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-12-02"):
        answer = await site.admin.get("/api/v1/sessions", params={"started_before": value})
        assert answer.status_code == 200, value


async def test_a_passive_client_is_woken_before_its_session_starts(site: Site) -> None:
    rep = await representative(site)
    passive = dict(mode="passive", online=False, address="127.0.0.9", wake_port=4555)
    sleeper = add_client(site, "sleepy-01", **passive)
    unreachable = add_client(site, "mute-01", mode="passive", online=False)
    woken: list[tuple[str, str, int]] = []

    class Waker:
        async def wake(self, client_id: str, address: str, port: int) -> str:
            woken.append((client_id, address, port))
            site.gateway.holds = True  # it checks in and stays for its session
            return "ok"

    site.gateway.holds = False
    site.rendezvous.waker = Waker()
    async with site.client(rep.token) as client:
        items = {
            i["name"]: i for i in (await client.get(f"{console.CONSOLE_API}/jump-items")).json()
        }
        assert items["sleepy-01"]["jumpable"] and "wakes it" in items["sleepy-01"]["reason"]
        answer = await client.post(
            f"{console.CONSOLE_API}/sessions", json={"jump_item_id": sleeper}
        )
        assert answer.status_code == 201, answer.text
        assert woken == [("jc_sleepy_01", "127.0.0.9", 4555)]
        assert site.gateway.commands[-1][0] == "jc_sleepy_01"
        answer = await client.post(
            f"{console.CONSOLE_API}/sessions", json={"jump_item_id": unreachable}
        )
        assert answer.status_code == 409 and "cannot be woken" in answer.text


async def test_a_site_running_its_installed_code_has_no_console_build_to_serve(
    site: Site,
) -> None:
    rep = await representative(site)
    digest = "a" * 64
    async with site.client(site.admin.headers["Authorization"].split()[1]) as api:
        assert (await api.get(f"{console.CONSOLE_API}/build")).status_code == 401
        assert (await api.get(f"{console.CONSOLE_API}/build/{digest}")).status_code == 401
    async with site.client(rep.token) as client:
        answer = await client.get(f"{console.CONSOLE_API}/build")
        assert answer.status_code == 404
        assert "runs the code installed with the appliance" in answer.json()["error"]["message"]
        assert (await client.get(f"{console.CONSOLE_API}/build/{digest}")).status_code == 404
        wrong = await client.get(f"{console.CONSOLE_API}/build/NOT-A-DIGEST")
        assert wrong.status_code == 422, wrong.text
