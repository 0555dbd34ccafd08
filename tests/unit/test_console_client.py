"""The access console's HTTPS calls, against a site played by an httpx transport: what it
sends, what it makes of the answers, and the errors a representative sees."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from bastion.access_console.client import ConsoleClient, site_url
from bastion.access_console.errors import (
    ConsoleError,
    JumpRefusedError,
    LockedOutError,
    MisunderstoodError,
    NotPermittedError,
    NotSignedInError,
    RefusedError,
    WrongCredentialsError,
)
from bastion.access_console.protocol import SessionOpened

TOKEN = "A" * 43
SIGNED_IN = {
    "token": "bearer-1",
    "expires_at": "2026-12-02T20:00:00Z",
    "username": "rep",
    "display_name": "Rep Resentative",
    "role": "representative",
}
ITEM = {
    "id": 7,
    "name": "web1",
    "hostname": "web1.example.org",
    "group": "Web",
    "tag": "",
    "mode": "active",
    "status": "online",
    "version": "1.0.0",
    "jumpable": True,
}


def site(
    answer: Callable[[httpx.Request], httpx.Response], token: str | None = None
) -> ConsoleClient:
    return ConsoleClient(
        "https://bastion.test:8443/", token=token, transport=httpx.MockTransport(answer)
    )


def error(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"type": "SomeError", "message": message}}
    return httpx.Response(status, json=body, headers=headers)


def test_sign_in_posts_the_credentials_and_keeps_the_token() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=SIGNED_IN)

    client = site(answer)
    signed = client.sign_in("rep", "secret")
    assert (signed.username, signed.role, client.token) == ("rep", "representative", "bearer-1")
    request = seen[0]
    assert (request.method, str(request.url)) == (
        "POST",
        "https://bastion.test:8443/api/v1/console/sign-in",
    )
    assert json.loads(request.content) == {"username": "rep", "password": "secret"}
    assert "authorization" not in request.headers


def test_the_calls_carry_the_bearer_token_and_follow_the_protocol() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/jump-items"):
            return httpx.Response(200, json=[ITEM])
        if request.url.path.endswith("/about"):
            return httpx.Response(
                200, json={"site": "bastion.test", "site_version": "1.0.0", "site_build": "abc"}
            )
        if request.url.path.endswith("/sessions"):
            path = "/api/v1/console/sessions/s1/terminal"
            return httpx.Response(
                201, json={"session_id": "s1", "terminal_path": path, "token": TOKEN}
            )
        return httpx.Response(204)

    client = site(answer, token="bearer-1")
    assert client.jump_items()[0].name == "web1"
    assert client.about().site_build == "abc"
    opened = client.open_session(7, cols=120, rows=40)
    assert (
        client.terminal_url(opened) == "wss://bastion.test:8443/api/v1/console/sessions/s1/terminal"
    )
    client.sign_out()
    assert client.token is None
    assert [(r.method, r.url.path) for r in seen] == [
        ("GET", "/api/v1/console/jump-items"),
        ("GET", "/api/v1/console/about"),
        ("POST", "/api/v1/console/sessions"),
        ("POST", "/api/v1/console/sign-out"),
    ]
    assert {r.headers["authorization"] for r in seen} == {"Bearer bearer-1"}
    assert json.loads(seen[2].content) == {
        "jump_item_id": 7,
        "kind": "jump_client",
        "cols": 120,
        "rows": 40,
    }


def test_a_wrong_password_and_a_lock_out_say_what_the_site_said() -> None:
    client = site(lambda _: error(401, "The username or password is not right."))
    with pytest.raises(WrongCredentialsError, match="username or password is not right"):
        client.sign_in("rep", "wrong")
    locked = site(lambda _: error(429, "Too many failed sign-ins.", {"Retry-After": "300"}))
    with pytest.raises(
        LockedOutError, match=r"Too many failed sign-ins\. \(try again in 300 s\)"
    ) as caught:
        locked.sign_in("rep", "secret")
    assert caught.value.retry_after == 300


def test_refusals_of_a_jump_show_the_sites_detail() -> None:
    pending = site(
        lambda _: error(409, "web1 is Upgrade Pending: it upgrades first, try in a minute."), "t"
    )
    with pytest.raises(JumpRefusedError, match="Upgrade Pending: it upgrades first") as caught:
        pending.open_session(7)
    assert caught.value.status == 409
    offline = site(lambda _: httpx.Response(503, json={"detail": "web1 is offline."}), "t")
    with pytest.raises(JumpRefusedError, match="web1 is offline"):
        offline.open_session(7)
    forbidden = site(lambda _: error(403, "You may not jump to web1."), "t")
    with pytest.raises(NotPermittedError, match="Not permitted: You may not jump to web1"):
        forbidden.open_session(7)


def test_an_expired_sign_in_a_missing_one_and_a_strange_answer() -> None:
    expired = site(lambda _: error(401, "Your sign-in has expired."), "t")
    with pytest.raises(NotSignedInError, match=r"expired.*console sign-in` again"):
        expired.jump_items()
    with pytest.raises(NotSignedInError, match="Not signed in"):
        site(lambda _: httpx.Response(200, json=[])).jump_items()
    strange = site(lambda _: httpx.Response(200, json=[{"id": "seven"}]), "t")
    with pytest.raises(MisunderstoodError, match="different versions"):
        strange.jump_items()
    broken = site(lambda _: httpx.Response(500, text="<html>oops</html>"), "t")
    with pytest.raises(RefusedError, match="The site answered 500: Internal Server Error"):
        broken.about()


def test_a_terminal_path_elsewhere_is_refused() -> None:
    for path in ("//evil.example/x", "https://evil.example/x"):
        body = SessionOpened(session_id="s1", terminal_path=path, token=TOKEN).model_dump()
        client = site(lambda _, body=body: httpx.Response(201, json=body), "t")
        with pytest.raises(MisunderstoodError, match="not its own"):
            client.open_session(7)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://bastion.test", "https://bastion.test"),
        ("https://bastion.test:8443/", "https://bastion.test:8443"),
        (" https://[::1]:8443 ", "https://[::1]:8443"),
    ],
)
def test_a_site_address_is_https_host_and_port(given: str, expected: str) -> None:
    assert site_url(given) == expected


@pytest.mark.parametrize(
    "given",
    ["http://bastion.test", "bastion.test", "https://bastion.test/login", "https://x:99999"],
)
def test_other_site_addresses_are_refused(given: str) -> None:
    with pytest.raises(ConsoleError):
        site_url(given)
