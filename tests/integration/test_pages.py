"""The `/login` and `/appliance` pages in process, against a real SQLite database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from httpx import Response

from bastion.accounts.rules import MIN_PASSWORD_LENGTH, PASSWORD_RULES, password_hint
from bastion.entrypoints import compose
from bastion.entrypoints.serving import initialise
from bastion.entrypoints.web import ROUTERS, create_app
from bastion.platform import audit, build
from bastion.platform.principals import Actor
from bastion.platform.settings import ApplianceSettings
from bastion.supervisor.sockets import ListenAddress, ListenError
from tests.support.loop_reads import plain_reads, statements_on_the_loop

FACTORY_PASSWORD = "password"
ADMIN_PASSWORD = "correct horse battery staple"
REP_PASSWORD = "a long secret for the help desk"
UNBINDABLE_PORT = 1

pytestmark = pytest.mark.anyio
Client = httpx.AsyncClient
Browser = Callable[[], Client]


class RecordingListeners:
    """Listeners that only remember what is open; the real sockets are tested elsewhere."""

    def __init__(self) -> None:
        self.opened: set[ListenAddress] = set()

    async def open(self, address: ListenAddress) -> None:
        if address.port == UNBINDABLE_PORT:
            raise ListenError(f"{address} cannot be bound: permission denied.")
        self.opened.add(address)

    async def close(self, address: ListenAddress) -> None:
        self.opened.discard(address)

    def active(self) -> list[ListenAddress]:
        return sorted(self.opened)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    settings = ApplianceSettings(
        data_dir=tmp_path / "appliance",
        listen=["127.0.0.1:8443"],
        password_hash_fast=True,
        ntp_server_default="",
        ntp_timeout_seconds=0.2,
    )
    runtime = compose.build(settings)
    initialise(runtime)
    compose.add_network(runtime, RecordingListeners())
    runtime.serving = True
    yield create_app(runtime)
    runtime.engine.dispose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[Browser]:
    """Each call opens one more browser (its own cookie jar) on the same appliance."""
    opened: list[Client] = []

    def open_browser() -> Client:
        client = Client(
            transport=httpx.ASGITransport(app=app),
            base_url="https://testserver",
            follow_redirects=False,
        )
        opened.append(client)
        return client

    yield open_browser
    for client in opened:
        await client.aclose()


def csrf_of(page: Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, f"no CSRF field on {page.url}"
    return match.group(1)


async def post_form(client: Client, page_url: str, action: str, **fields: str) -> Response:
    """Submit a form the way a browser does: with the CSRF token of the page that holds it."""
    page = await client.get(page_url)
    assert page.status_code == 200, page.text
    return await client.post(action, data={"csrf_token": csrf_of(page), **fields})


async def sign_in(client: Client, username: str, password: str, next_url: str = "") -> Response:
    return await post_form(
        client, "/login", "/login", username=username, password=password, next=next_url
    )


async def change_password(client: Client, current: str, new: str, confirm: str = "") -> Response:
    fields = {"current_password": current, "new_password": new}
    fields["confirm_password"] = confirm or new
    return await post_form(client, "/login/change-password", "/login/change-password", **fields)


def redirected_to(response: Response) -> str:
    assert response.status_code == 303, response.text
    return response.headers["location"]


@pytest.fixture
async def admin(browser: Browser) -> Client:
    client = browser()
    assert (
        redirected_to(await sign_in(client, "admin", FACTORY_PASSWORD)) == "/login/change-password"
    )
    assert redirected_to(
        await change_password(client, FACTORY_PASSWORD, ADMIN_PASSWORD)
    ).startswith("/login/home")
    return client


async def create_user(admin: Client, username: str, role: str = "representative") -> Response:
    return await post_form(
        admin,
        "/login/users",
        "/login/users",
        username=username,
        display_name=username.title(),
        role=role,
        password=REP_PASSWORD,
    )


async def account_id(admin: Client, username: str) -> str:
    match = re.search(
        rf'<tr data-username="{username}">.*?href="/login/users/(\d+)"',
        (await admin.get("/login/users")).text,
        re.S,
    )
    assert match, f"{username} is not listed"
    return match.group(1)


@pytest.fixture
async def representative(browser: Browser, admin: Client) -> Client:
    assert redirected_to(await create_user(admin, "rita")).startswith("/login/users?created=")
    client = browser()
    assert redirected_to(await sign_in(client, "rita", REP_PASSWORD)) == "/login/change-password"
    assert "An administrator set your password" in (await client.get("/login/change-password")).text
    assert redirected_to(
        await change_password(client, REP_PASSWORD, REP_PASSWORD + " v2")
    ).startswith("/login/home")
    return client


# Sign-in and the forced first password change.


async def test_first_sign_in_requires_a_new_password_before_any_other_page(
    browser: Browser,
) -> None:
    client = browser()
    signed_in = await sign_in(client, "admin", FACTORY_PASSWORD)
    assert redirected_to(signed_in) == "/login/change-password"
    cookie = signed_in.headers["set-cookie"].lower()
    for flag in ("secure", "httponly", "samesite=strict", "path=/"):
        assert flag in cookie

    for path in ("/login/home", "/login/users", "/login/audit", "/appliance/status/basics"):
        assert redirected_to(await client.get(path)) == "/login/change-password", path
    form = await client.get("/login/change-password")
    assert "You signed in with the factory password; choose your own" in form.text

    mismatch = await change_password(client, FACTORY_PASSWORD, ADMIN_PASSWORD, "something else 123")
    assert mismatch.status_code == 400
    assert "confirmation differ" in mismatch.text
    wrong_current = await change_password(client, "not the password", ADMIN_PASSWORD)
    assert wrong_current.status_code == 400
    assert "current password is wrong" in wrong_current.text
    too_short = await change_password(client, FACTORY_PASSWORD, "short")
    assert too_short.status_code == 400
    assert "at least 12 characters" in too_short.text
    assert redirected_to(await client.get("/login/home")) == "/login/change-password"

    changed = redirected_to(await change_password(client, FACTORY_PASSWORD, ADMIN_PASSWORD))
    assert changed == "/login/home?password_changed=1"
    home = await client.get(changed)
    assert home.status_code == 200
    assert 'id="username">admin<' in home.text
    assert "administrator" in home.text
    assert "Your password was changed." in home.text


async def test_refused_password_changes_are_audited_and_change_nothing(
    app: FastAPI, browser: Browser, admin: Client
) -> None:
    new = "a fresh and long passphrase"
    refused = {
        "wrong current password": ("not my password", new, new),
        "confirmation differs": (ADMIN_PASSWORD, new, "another long passphrase"),
        "password policy": (ADMIN_PASSWORD, "aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa"),
    }
    for current, chosen, confirmation in refused.values():
        answer = await change_password(admin, current, chosen, confirmation)
        assert answer.status_code == 400, answer.text
    with app.state.runtime.uow() as uow:
        entries, _ = audit.page(uow, 10, 0, "account.password_change.failed")
    assert sorted(e.details["reason"] for e in entries) == sorted(refused)
    assert {(e.actor, e.target, e.source) for e in entries} == {("admin", "admin", "127.0.0.1")}
    policy = next(e for e in entries if e.details["reason"] == "password policy")
    assert policy.details["problems"] == ["Use at least 5 different characters."]
    assert "account.password_change.failed" in (await admin.get("/login/audit")).text
    assert redirected_to(await sign_in(browser(), "admin", ADMIN_PASSWORD)) == "/login/home"


async def test_password_fields_state_every_rule_the_policy_checks(admin: Client) -> None:
    own = (await admin.get("/login/change-password")).text
    assert f'id="password-hint">{password_hint(changing_own=True)}<' in own
    assert all(rule.hint in own.lower() for rule in PASSWORD_RULES)
    assert f'minlength="{MIN_PASSWORD_LENGTH}"' in own
    for page in ("/login/users", f"/login/users/{await account_id(admin, 'admin')}"):
        shown = (await admin.get(page)).text
        assert password_hint() in shown, page
        assert "current password" not in password_hint()


async def test_wrong_password_is_refused_and_repeated_failures_are_throttled(
    browser: Browser,
) -> None:
    client = browser()
    wrong = await sign_in(client, "admin", "not the password")
    assert wrong.status_code == 401
    assert "The username or password is wrong." in wrong.text
    assert "bastion_session" not in wrong.headers.get("set-cookie", "")
    assert (await sign_in(client, "nobody", "whatever")).status_code == 401

    for _ in range(3):
        await sign_in(client, "admin", "still not the password")
    throttled = await sign_in(client, "admin", FACTORY_PASSWORD)
    assert throttled.status_code == 429
    assert "Too many failed sign-ins" in throttled.text
    assert int(throttled.headers["retry-after"]) >= 1


async def test_signed_in_user_is_sent_home_and_next_stays_on_this_site(
    browser: Browser, admin: Client
) -> None:
    assert redirected_to(await admin.get("/login")) == "/login/home"
    assert redirected_to(await post_form(admin, "/login/home", "/login/logout")) == "/login"
    assert redirected_to(await admin.get("/login/audit")) == "/login?next=/login/audit"

    login_page = await admin.get("/login?next=/login/audit")
    assert 'name="next" value="/login/audit"' in login_page.text
    assert (
        redirected_to(await sign_in(admin, "admin", ADMIN_PASSWORD, "/login/audit"))
        == "/login/audit"
    )

    for outside in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        signed_in = await sign_in(browser(), "admin", ADMIN_PASSWORD, outside)
        assert redirected_to(signed_in) == "/login/home"
        login_page = await browser().get("/login", params={"next": outside})
        assert 'name="next" value=""' in login_page.text


# CSRF.


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(admin: Client) -> None:
    missing = await admin.post(
        "/login/users",
        data={"username": "mallory", "role": "administrator", "password": REP_PASSWORD},
    )
    assert missing.status_code == 403
    assert "Nothing was changed" in missing.text
    forged = await admin.post(
        "/login/users",
        data={"csrf_token": "forged", "username": "mallory", "password": REP_PASSWORD},
    )
    assert forged.status_code == 403
    assert "mallory" not in (await admin.get("/login/users")).text
    assert (await admin.post("/login/logout")).status_code == 403
    assert (await admin.get("/login/home")).status_code == 200


async def test_sign_in_form_needs_its_csrf_token(browser: Browser) -> None:
    client = browser()
    await client.get("/login")
    refused = await client.post("/login", data={"username": "admin", "password": FACTORY_PASSWORD})
    assert refused.status_code == 403
    assert "bastion_session" not in refused.headers.get("set-cookie", "")


# Accounts.


async def test_administrator_creates_edits_and_disables_an_account(
    browser: Browser, admin: Client, representative: Client
) -> None:
    users = await admin.get(redirected_to(await create_user(admin, "bob")))
    assert "The account bob was created." in users.text
    assert '<tr data-username="bob">' in users.text

    duplicate = await create_user(admin, "bob")
    assert duplicate.status_code == 409
    assert "already exists" in duplicate.text
    weak = await post_form(
        admin, "/login/users", "/login/users", username="carol", role="representative", password="x"
    )
    assert weak.status_code == 400
    assert 'value="carol"' in weak.text

    rita = await account_id(admin, "rita")
    saved = await post_form(
        admin,
        f"/login/users/{rita}",
        f"/login/users/{rita}",
        display_name="Rita Reyes",
        role="representative",
        disabled="1",
    )
    assert redirected_to(saved) == f"/login/users/{rita}?saved=1"
    page = await admin.get(f"/login/users/{rita}")
    assert 'value="Rita Reyes"' in page.text
    assert re.search(r'name="disabled" value="1"\s+checked', page.text)

    ended = redirected_to(await representative.get("/login/home"))
    assert ended == "/login?next=/login/home&ended=1"
    assert "Your session ended, please sign in again" in (await representative.get(ended)).text
    disabled = await sign_in(representative, "rita", REP_PASSWORD + " v2")
    assert disabled.status_code == 401
    assert "This account is disabled" in disabled.text


async def test_the_last_administrator_cannot_be_demoted(admin: Client) -> None:
    own = await account_id(admin, "admin")
    refused = await post_form(
        admin,
        f"/login/users/{own}",
        f"/login/users/{own}",
        display_name="Renamed first",
        role="representative",
    )
    assert refused.status_code == 409
    assert "last active administrator" in refused.text
    assert 'value="Administrator"' in refused.text
    assert 'value="Renamed first"' not in (await admin.get(f"/login/users/{own}")).text


async def test_a_representative_is_refused_administrator_pages(representative: Client) -> None:
    for path in (
        "/login/users",
        "/login/api-clients",
        "/login/audit",
        "/appliance/status/basics",
        "/appliance/networking/ip-configuration",
    ):
        refused = await representative.get(path)
        assert refused.status_code == 403, path
        assert "for administrators only" in refused.text
    refused_post = await post_form(
        representative,
        "/login/home",
        "/login/users",
        username="sneaky",
        role="administrator",
        password=REP_PASSWORD,
    )
    assert refused_post.status_code == 403
    home = await representative.get("/login/home")
    assert home.status_code == 200
    assert 'href="/login/users"' not in home.text


# API clients.


async def test_api_client_secret_is_shown_once_and_the_client_can_be_revoked(admin: Client) -> None:
    created = await post_form(
        admin, "/login/api-clients", "/login/api-clients", name="backup puller"
    )
    assert created.status_code == 200
    assert "Copy the secret now" in created.text
    secret = re.search(r'id="client-secret">([^<]+)<', created.text)
    assert secret
    listing = await admin.get("/login/api-clients")
    assert "backup puller" in listing.text
    assert secret.group(1) not in listing.text

    duplicate = await post_form(
        admin, "/login/api-clients", "/login/api-clients", name="backup puller"
    )
    assert duplicate.status_code == 409
    revoke = re.search(r'action="(/login/api-clients/\d+/revoke)"', listing.text)
    assert revoke
    assert redirected_to(await post_form(admin, "/login/api-clients", revoke.group(1))).endswith(
        "/login/api-clients"
    )
    assert "revoked" in (await admin.get("/login/api-clients")).text


# Audit log.


async def test_audit_log_shows_who_did_what_and_filters_by_action(
    browser: Browser, admin: Client, representative: Client
) -> None:
    await sign_in(browser(), "admin", "wrong password")
    log = await admin.get("/login/audit")
    assert log.status_code == 200
    for action in ("sign_in.success", "sign_in.failure", "account.password_change"):
        assert action in log.text
    assert "role=representative" in log.text
    assert "127.0.0.1" in log.text

    created = await admin.get("/login/audit?action=account.create")
    assert "account.create" in created.text
    assert "sign_in.success" not in created.text
    assert "1 entry with action account.create" in created.text
    assert "No entries." in (await admin.get("/login/audit?page=2")).text


async def test_audit_log_pages_keep_the_action_filter(app: FastAPI, admin: Client) -> None:
    with app.state.runtime.uow() as uow:
        for number in range(60):
            audit.record(uow, Actor(None, "192.0.2.7"), "test.entry", f"target-{number}")
        uow.commit()
    first = await admin.get("/login/audit?action=test.entry")
    assert "60 entries with action test.entry; page 1 of 2." in first.text
    assert "target-59" in first.text
    assert "target-9<" not in first.text
    older = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert older
    assert older.group(1).replace("&amp;", "&") == "/login/audit?action=test.entry&page=2"
    second = await admin.get(older.group(1).replace("&amp;", "&"))
    assert "page 2 of 2." in second.text
    assert second.text.count("<tr>") == 10 + 1
    assert 'rel="prev" href="/login/audit?action=test.entry&amp;page=1"' in second.text


# The appliance interface.


async def test_status_basics_shows_version_build_and_clock(admin: Client) -> None:
    assert redirected_to(await admin.get("/appliance")) == "/appliance/status/basics"
    page = await admin.get("/appliance/status/basics")
    assert page.status_code == 200
    assert f'id="product-version">{build.site_version()}<' in page.text
    assert f'id="build">{build.build_id()}<' in page.text
    for element in ('id="base-version"', 'id="uptime"', 'id="clock-utc"', 'id="clock-status"'):
        assert element in page.text
    assert 'data-level="unknown"' in page.text
    measured = await post_form(
        admin, "/appliance/status/basics", "/appliance/status/basics/measure"
    )
    assert redirected_to(measured) == "/appliance/status/basics"
    assert "No NTP server is configured." in (await admin.get("/appliance/status/basics")).text


async def test_listen_addresses_are_added_disabled_and_removed(admin: Client) -> None:
    page = "/appliance/networking/ip-configuration"
    add = "/appliance/networking/listen-addresses"
    for address in ("127.0.0.1:9443", "127.0.0.2:9443"):
        assert redirected_to(await post_form(admin, page, add, address=address)) == page
    listing = (await admin.get(page)).text
    assert listing.count("serving</span>") == 2

    bad = await post_form(admin, page, add, address="localhost:443")
    assert bad.status_code == 400
    assert "is not an IP address" in bad.text
    assert 'value="localhost:443"' in bad.text
    assert (await post_form(admin, page, add, address="127.0.0.1:9443")).status_code == 409
    unbindable = await post_form(admin, page, add, address=f"127.0.0.1:{UNBINDABLE_PORT}")
    assert unbindable.status_code == 400
    assert "cannot be bound" in unbindable.text

    row = re.search(r'action="(/appliance/networking/listen-addresses/(\d+))/disable"', listing)
    assert row
    assert (await post_form(admin, page, row.group(1) + "/remove")).status_code == 409
    assert redirected_to(await post_form(admin, page, row.group(1) + "/disable")) == page
    assert "not serving" in (await admin.get(page)).text
    assert redirected_to(await post_form(admin, page, row.group(1) + "/remove")) == page
    assert (await post_form(admin, page, row.group(1) + "/enable")).status_code == 404
    assert "127.0.0.1:9443" not in (await admin.get(page)).text


async def test_ntp_server_is_validated_saved_and_measured(admin: Client) -> None:
    page = "/appliance/networking/ip-configuration"
    bad = await post_form(admin, page, "/appliance/networking/ntp", server="not a host!")
    assert bad.status_code == 400
    assert "is not a host name or IP address" in bad.text
    saved = await post_form(admin, page, "/appliance/networking/ntp", server="127.0.0.1")
    assert redirected_to(saved) == page
    assert 'value="127.0.0.1"' in (await admin.get(page)).text
    status = (await admin.get("/appliance/status/basics")).text
    assert "The NTP server 127.0.0.1 cannot be reached: the server refused" in status
    assert "Errno" not in status
    assert "network.ntp_server.set" in (await admin.get("/login/audit")).text


async def test_updates_without_an_update_service_point_below_not_to_the_page_itself(
    admin: Client,
) -> None:
    page = (await admin.get("/appliance/updates")).text
    assert re.search(r"<button type=\"submit\" disabled[^>]*>Check for updates<", page)
    assert page.count("carries no update trusted root") == 1
    refused = await post_form(admin, "/appliance/updates", "/appliance/updates/check")
    assert refused.status_code == 409
    assert "No update service is configured" in refused.text
    assert "Use Manual Installation below" in refused.text
    assert "/appliance &gt; Updates" not in refused.text


# Every form's address answers a reload.


class PageParts(HTMLParser):
    """The same-site links and the addresses of the POST forms on one page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: set[str] = set()
        self.post_actions: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        href, action = found.get("href") or "", found.get("action") or ""
        if tag == "a" and href.startswith("/") and not href.startswith(("//", "/static/", "/api/")):
            self.links.add(href.split("#")[0])
        if tag == "form" and (found.get("method") or "").lower() == "post":
            self.post_actions.add(action)


async def every_post_action(client: Client, *start: str) -> dict[str, str]:
    """Each POST form's action on every page reachable from `start`, with one page it is on."""
    actions: dict[str, str] = {}
    seen, queue = set(start), list(start)
    while queue:
        page = queue.pop(0)
        answer = await client.get(page)
        if not answer.headers.get("content-type", "").startswith("text/html"):
            continue
        parts = PageParts()
        parts.feed(answer.text)
        for action in parts.post_actions:
            actions.setdefault(action, page)
        queue += sorted(parts.links - seen)
        seen |= parts.links
    return actions


async def test_every_post_form_address_answers_a_reload_with_its_page(admin: Client) -> None:
    """A refused form is shown again at its action's address; opening that address again
    (a reload from the address bar, a bookmark) must lead to a page, not "Method Not Allowed"."""
    await create_user(admin, "rita")
    await post_form(admin, "/login/api-clients", "/login/api-clients", name="monitoring")
    ip_page, certificates = (
        "/appliance/networking/ip-configuration",
        "/appliance/security/certificates",
    )
    await post_form(
        admin, ip_page, "/appliance/networking/listen-addresses", address="127.0.0.1:9443"
    )
    await post_form(admin, certificates, f"{certificates}/self-signed", names="other.example")
    await post_form(admin, certificates, f"{certificates}/request", names="asked.example")

    actions = await every_post_action(admin, "/login/home", "/appliance/status/basics")
    assert len(actions) >= 20, sorted(actions)  # every capability's forms were found
    for action, page in sorted(actions.items()):
        reload = await admin.get(action, follow_redirects=True)
        assert reload.status_code == 200, f"GET {action} (a form on {page}): {reload.status_code}"
        assert reload.url.path != action or action == page, f"GET {action} stayed on the action"


def test_every_page_route_that_takes_a_form_answers_get_too() -> None:
    """Forms only shown in some states (a download, an install plan) are covered here."""
    methods: dict[str, set[str]] = {}
    for route in (r for router in ROUTERS for r in router.routes):
        if isinstance(route, APIRoute) and not route.path.startswith("/api/"):
            methods.setdefault(route.path, set()).update(route.methods)
    posted = {path for path, verbs in methods.items() if "POST" in verbs}
    assert len(posted) >= 30
    assert sorted(path for path in posted if "GET" not in methods[path]) == []


async def test_a_form_post_reads_the_database_off_the_event_loop(
    app: FastAPI, admin: Client
) -> None:
    """A form post's checks, its CSRF token's session included, run on worker threads
    (see `tests.support.loop_reads`)."""
    page = await admin.get("/login/users")
    with statements_on_the_loop(app.state.runtime.engine) as on_loop:
        created = await admin.post(
            "/login/users",
            data={
                "csrf_token": csrf_of(page),
                "username": "zoe",
                "display_name": "Zoë",
                "role": "representative",
                "password": REP_PASSWORD,
            },
        )
    assert created.status_code == 303, created.text
    assert on_loop == []


async def test_no_page_reads_the_database_on_the_event_loop(app: FastAPI, admin: Client) -> None:
    """Every page an administrator opens without an id in its path."""
    pages = plain_reads(api=False)
    on_loop: dict[str, list[str]] = {}
    statuses: dict[str, int] = {}
    for opening in pages:
        with statements_on_the_loop(app.state.runtime.engine) as found:
            statuses[opening] = (await admin.get(opening)).status_code
        if found:
            on_loop[opening] = found
    assert len(pages) > 20
    # in this process there is no supervisor (503) and /metrics wants its own token (401)
    assert {path: status for path, status in statuses.items() if status in (404, 500)} == {}
    assert sum(status == 200 for status in statuses.values()) >= 20
    assert on_loop == {}
