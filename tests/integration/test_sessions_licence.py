"""Licences (R41) with the real app served over TLS and real WebSocket clients playing the
access console and the Jump Client (the fixtures of test_sessions.py): the one beyond the
licensed representatives or endpoints in sessions is refused with the count and who holds
it, a burst racing for the last seat lets exactly one through, a smaller licence ends
nobody, and the counts show on Status > Basics and in the API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from bastion.access_console import protocol as console
from bastion.entrypoints import compose
from bastion.platform.clock import utc_now
from bastion.updates.service import LICENSE_SETTING, License
from tests.integration import test_sessions as base
from tests.integration.test_pages import RecordingListeners
from tests.integration.test_sessions import (
    PASSWORD,
    Rep,
    Site,
    add_account,
    add_client,
    agent_joins,
    closed_with,
    console_joins,
    representative,
    session_record,
    site_says,
)
from tests.support import web

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
site = base.site
"""The same site as test_sessions.py's: served, with a gateway that records commands."""
REFUSED_REPRESENTATIVES = (
    "The licence allows 2 representatives in sessions at once; in sessions now: alice, bob. "
    "Wait for one to end, or install a licence add-on with more."
)


def install_licence(site: Site, representatives: int, endpoints: int, version: str = "2") -> None:
    """Store a licence add-on's counts as installing one does (no restart follows)."""
    licence = License(version, representatives, endpoints, utc_now().isoformat())
    with site.runtime.uow() as uow:
        uow.settings.set(LICENSE_SETTING, licence.__dict__)
        uow.commit()


async def jump(site: Site, rep: Rep, row: int | None = None) -> httpx.Response:
    async with site.client(rep.token) as client:
        return await client.post(
            f"{console.CONSOLE_API}/sessions", json={"jump_item_id": row or rep.client_row}
        )


def opened(answer: httpx.Response) -> console.SessionOpened:
    assert answer.status_code == 201, answer.text
    return console.SessionOpened.model_validate(answer.json())


def refusal(answer: httpx.Response) -> str:
    assert answer.status_code == 409, answer.text
    return str(answer.json()["error"]["message"])


async def end(site: Site, *sessions: console.SessionOpened) -> None:
    for session in sessions:
        answer = await site.admin.post(f"/api/v1/sessions/{session.session_id}/end")
        assert answer.status_code == 200, answer.text


async def licence(site: Site) -> dict[str, Any]:
    answer = await site.admin.get("/api/v1/sessions/licence")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_the_one_beyond_the_representatives_is_refused_with_who_holds_them(
    site: Site,
) -> None:
    install_licence(site, representatives=2, endpoints=10)
    alice, bob, carol = [await representative(site, name) for name in ("alice", "bob", "carol")]
    first = opened(await jump(site, alice))
    opened(await jump(site, bob))
    started = len(site.gateway.commands)
    refused = await jump(site, carol)
    assert refusal(refused) == REFUSED_REPRESENTATIVES
    assert len(site.gateway.commands) == started, "the refused jump reached no Jump Client"
    listed = (await site.admin.get("/api/v1/sessions", params={"username": "carol"})).json()
    assert listed["total"] == 1 and listed["sessions"][0]["end_reason"] == REFUSED_REPRESENTATIVES
    again = opened(await jump(site, alice))  # counted already: not counted twice
    opened(await jump(site, alice, bob.client_row))  # an endpoint counted already, too
    assert refusal(await jump(site, carol)) == REFUSED_REPRESENTATIVES
    await end(site, first)
    assert refusal(await jump(site, carol)) == REFUSED_REPRESENTATIVES, "alice has two more"
    await end(site, again)
    assert refusal(await jump(site, carol)) == REFUSED_REPRESENTATIVES
    alice_sessions = [s for s in site.rendezvous.live.values() if s.plan.seat.username == "alice"]
    for live in alice_sessions:
        await site.rendezvous.end(live, "the test ended it")
    opened(await jump(site, carol))


async def test_the_one_beyond_the_endpoints_is_refused_with_who_is_on_them(site: Site) -> None:
    install_licence(site, representatives=10, endpoints=1)
    alice, bob = await representative(site, "alice"), await representative(site, "bob")
    opened(await jump(site, alice))
    assert refusal(await jump(site, bob)) == (
        "The licence allows 1 endpoint in sessions at once; in sessions now: "
        "alice-web-01 (alice). Wait for one to end, or install a licence add-on with more."
    )
    opened(await jump(site, bob, alice.client_row))  # the same endpoint: not counted twice
    assert "alice-web-01 (alice, bob)" in refusal(await jump(site, alice, bob.client_row))


async def test_a_session_counts_from_its_opening_until_it_ends_or_its_deadline_passes(
    site: Site,
) -> None:
    install_licence(site, representatives=1, endpoints=5)
    alice, bob = await representative(site, "alice"), await representative(site, "bob")
    session = opened(await jump(site, alice))
    start = site.gateway.last()
    assert "in sessions now: alice." in refusal(await jump(site, bob)), "before either end joined"
    agent_path = f"/agent/v1/sessions/{start.session_id}"
    async with (
        site.websocket(session.terminal_path) as term,
        site.websocket(agent_path) as agent,
    ):
        await console_joins(term, session)
        await agent_joins(agent, alice, start)
        assert isinstance(await site_says(term), console.Started)
        assert "in sessions now: alice." in refusal(await jump(site, bob)), "while relayed"
        await term.send(console.write(console.End()))
        assert (await closed_with(term))[0] == 1000
    await session_record(site, session.session_id)
    site.rendezvous.join_timeout = 0.5
    waiting = opened(await jump(site, bob))  # and neither of its ends ever joins
    assert "in sessions now: bob." in refusal(await jump(site, alice))
    record = await session_record(site, waiting.session_id)
    assert record["end_reason"] == "the Jump Client did not answer"
    opened(await jump(site, alice))


async def test_a_burst_racing_for_the_last_representative_lets_exactly_one_through(
    site: Site,
) -> None:
    install_licence(site, representatives=2, endpoints=100)
    opened(await jump(site, await representative(site, "first")))
    racers = [await representative(site, f"racer{i:02d}") for i in range(20)]
    answers = await asyncio.gather(*(jump(site, rep) for rep in racers))
    assert sorted(a.status_code for a in answers) == [201] + [409] * 19, [a.text for a in answers]
    winner = next(rep for rep, a in zip(racers, answers, strict=True) if a.status_code == 201)
    name = winner.client_id.removeprefix("jc_").removesuffix("_web_01")
    for answer in answers:
        if answer.status_code == 409:
            assert (
                f"allows 2 representatives in sessions at once; in sessions now: first, {name}."
                in refusal(answer)
            )
    counted = (await licence(site))["representatives"]
    assert (counted["in_sessions"], counted["licensed"]) == (2, 2)
    assert len(site.rendezvous.seats()) == 2


async def test_a_burst_racing_for_the_last_endpoint_lets_exactly_one_through(site: Site) -> None:
    install_licence(site, representatives=100, endpoints=2)
    rep = await representative(site, "solo")
    opened(await jump(site, rep))
    rows = [add_client(site, f"node-{i:02d}") for i in range(20)]
    answers = await asyncio.gather(*(jump(site, rep, row) for row in rows))
    assert sorted(a.status_code for a in answers) == [201] + [409] * 19, [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert "allows 2 endpoints in sessions at once" in refusal(answer)
    assert (await licence(site))["endpoints"]["in_sessions"] == 2


async def test_a_smaller_licence_ends_nobody_and_refuses_new_ones_until_under_it(
    site: Site,
) -> None:
    install_licence(site, representatives=3, endpoints=3)
    reps = [await representative(site, name) for name in ("alice", "bob", "carol", "dave")]
    sessions = [opened(await jump(site, rep)) for rep in reps[:3]]
    install_licence(site, representatives=1, endpoints=1, version="3")
    assert len(site.rendezvous.seats()) == 3, "nobody's session ended"
    counts = await licence(site)
    assert counts["license_version"] == "3"
    assert counts["representatives"] == {
        "in_sessions": 3,
        "licensed": 1,
        "names": ["alice", "bob", "carol"],
    }
    assert counts["endpoints"]["in_sessions"] == 3 and counts["endpoints"]["licensed"] == 1
    dave = reps[3]
    assert "allows 1 representative in sessions at once" in refusal(await jump(site, dave))
    opened(await jump(site, reps[0]))  # alice is counted already, and so is her endpoint
    await end(site, sessions[1], sessions[2])
    assert "in sessions now: alice." in refusal(await jump(site, dave))
    for live in list(site.rendezvous.live.values()):
        await site.rendezvous.end(live, "the test ended it")
    opened(await jump(site, dave))


async def test_without_a_licence_add_on_there_is_no_limit(site: Site) -> None:
    counts = await licence(site)
    assert counts == {
        "license_version": None,
        "representatives": {"in_sessions": 0, "licensed": None, "names": []},
        "endpoints": {"in_sessions": 0, "licensed": None, "endpoints": []},
    }
    reps = [await representative(site, f"rep{i}") for i in range(5)]
    for rep in reps:
        opened(await jump(site, rep))
    counts = await licence(site)
    assert counts["representatives"]["in_sessions"] == 5
    assert counts["endpoints"]["endpoints"][0] == {
        "name": "rep0-web-01",
        "representatives": ["rep0"],
    }


async def test_status_basics_and_the_api_show_the_counts_and_who_holds_them(site: Site) -> None:
    add_account(site, "boss", role="administrator")
    compose.add_network(site.runtime, RecordingListeners())  # what Status > Basics reads too

    def basics() -> str:
        with httpx.Client(base_url=site.url, verify=site.tls, timeout=20) as browser:
            web.sign_in(browser, "boss", PASSWORD)
            page = browser.get("/appliance/status/basics")
            assert page.status_code == 200, page.text
            return page.text

    page = await asyncio.to_thread(basics)
    assert (
        'id="representatives-now">0<' in page and 'id="licensed-representatives">no limit<' in page
    )
    assert "no licence add-on installed: no limit (the open-source default)" in page
    install_licence(site, representatives=5, endpoints=25)
    alice, bob = await representative(site, "alice"), await representative(site, "bob")
    opened(await jump(site, alice))
    opened(await jump(site, bob, alice.client_row))
    page = await asyncio.to_thread(basics)
    assert 'id="representatives-now">2<' in page and 'id="licensed-representatives">5<' in page
    assert 'id="endpoints-now">1<' in page and 'id="licensed-endpoints">25<' in page
    assert "(alice, bob)" in page and "alice-web-01 (alice, bob)" in page
    assert "licence add-on 2" in page
    counts = await licence(site)
    assert counts["endpoints"] == {
        "in_sessions": 1,
        "licensed": 25,
        "endpoints": [{"name": "alice-web-01", "representatives": ["alice", "bob"]}],
    }


async def test_the_licence_api_takes_no_one_else_and_extremes_never_fail(site: Site) -> None:
    install_licence(site, representatives=2**62, endpoints=0)
    rep = await representative(site, "alice")
    assert "allows 0 endpoints in sessions at once; in sessions now: none." in refusal(
        await jump(site, rep)
    )
    counts = await licence(site)
    assert counts["representatives"]["licensed"] == 2**62
    async with site.client() as nobody:
        assert (await nobody.get("/api/v1/sessions/licence")).status_code == 401
    async with site.client(rep.token) as console_token:
        assert (await console_token.get("/api/v1/sessions/licence")).status_code == 401
    odd = await site.admin.get("/api/v1/sessions/licence", params={"x": "ü" * 5000})
    assert odd.status_code == 200
    assert (await site.admin.post("/api/v1/sessions/licence")).status_code == 405
    async with site.client(rep.token) as client:
        for body in ({"jump_item_id": 2**63}, {"jump_item_id": -1}, {"jump_item_id": "ü"}):
            answer = await client.post(f"{console.CONSOLE_API}/sessions", json=body)
            assert answer.status_code == 422, answer.text
    assert site.gateway.commands == []
