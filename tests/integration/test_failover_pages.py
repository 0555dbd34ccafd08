"""`/login > Management > Security` and `> Failover` in process: the inter-appliance key's
field, what the Failover page refuses, and a backup hiding the primary's pages."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi import FastAPI

from bastion.backups import service as backups
from bastion.backups.service import BackupSite
from bastion.failover import state
from bastion.failover.rules import Role
from bastion.failover.state import Pair, Peer
from bastion.platform.errors import ConflictError
from bastion.platform.principals import APPLIANCE
from tests.integration.test_pages import Browser, Client, post_form

# The in-process appliance and its signed-in administrator, as the other pages use them:
from tests.integration.test_pages import admin as admin
from tests.integration.test_pages import anyio_backend as anyio_backend
from tests.integration.test_pages import app as app
from tests.integration.test_pages import browser as browser

pytestmark = pytest.mark.anyio
PAGE = "/login/management/security"
KEY = "a shared inter-appliance key"


async def test_the_key_is_set_on_the_security_page_and_stored_sealed(
    admin: Client, tmp_path: Path
) -> None:
    page = await admin.get(PAGE)
    assert page.status_code == 200 and "No key is set." in page.text
    assert 'href="/login/management/security"' in page.text  # in the navigation

    refused = await post_form(admin, PAGE, f"{PAGE}/key", key="short", confirm_key="short")
    assert refused.status_code == 400 and "at least 16 characters" in refused.text
    differ = await post_form(admin, PAGE, f"{PAGE}/key", key=KEY, confirm_key=KEY + "!")
    assert differ.status_code == 400 and "The two keys differ" in differ.text

    saved = await post_form(admin, PAGE, f"{PAGE}/key", key=KEY, confirm_key=KEY)
    assert saved.status_code == 200 and "The inter-appliance key is set." in saved.text
    assert "A key is set." in (await admin.get(PAGE)).text
    sealed = tmp_path / "appliance" / "state" / "inter-appliance-key.sealed"
    assert KEY.encode() not in sealed.read_bytes()


async def test_only_an_administrator_sees_the_page(browser: Browser) -> None:
    answer = await browser().get(PAGE)
    assert answer.status_code in (303, 401, 403)


FAILOVER = "/login/management/failover"


async def test_the_failover_page_refuses_what_cannot_make_a_pair(admin: Client) -> None:
    page = await admin.get(FAILOVER)
    assert page.status_code == 200 and 'id="failover-role">none<' in page.text
    assert 'href="/login/management/failover"' in page.text  # in the navigation
    assert "not set here yet" in page.text and "Sync Now" not in page.text

    fields = {"backup_port": "443", "reverse_host": "127.0.0.9", "reverse_port": "443"}
    no_key = await post_form(
        admin, FAILOVER, f"{FAILOVER}/establish", backup_host="127.0.0.8", **fields
    )
    assert no_key.status_code == 409 and "inter-appliance key" in no_key.text
    assert 'value="127.0.0.8"' in no_key.text  # the form keeps what was typed
    for port in ("0", "65536", "2" * 30, "x"):
        odd = await post_form(
            admin,
            FAILOVER,
            f"{FAILOVER}/establish",
            backup_host="b",
            **{**fields, "backup_port": port},
        )
        assert odd.status_code == 422, (port, odd.status_code)
    long_host = await post_form(
        admin, FAILOVER, f"{FAILOVER}/establish", backup_host="ü" * 300, **fields
    )
    assert long_host.status_code == 422
    alone = await post_form(admin, FAILOVER, f"{FAILOVER}/sync")
    assert alone.status_code == 409 and "not in a failover pair" in alone.text
    forged = await admin.post(f"{FAILOVER}/sync", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    back = await admin.get(f"{FAILOVER}/establish", follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == FAILOVER


async def test_only_an_administrator_sees_the_failover_page(browser: Browser) -> None:
    answer = await browser().get(FAILOVER)
    assert answer.status_code in (303, 401, 403)


async def test_a_backup_hides_the_primarys_pages_and_says_where_it_is(
    admin: Client, tmp_path: Path
) -> None:
    assert (await admin.get("/login/users")).status_code == 200  # not in a pair: shown
    peer = Peer("127.0.0.9", 8443, "ab" * 32)
    state.write_pair(tmp_path / "appliance" / "state", Pair(Role.BACKUP, peer))
    for path in ("/login/users", "/login/api-clients", "/login/jump/jump-clients", "/console"):
        moved = await admin.get(path, follow_redirects=False)
        assert moved.status_code == 303, path
        assert moved.headers["location"] == f"{FAILOVER}?hidden=1"
    made = await admin.post("/login/users", data={"username": "x"}, follow_redirects=False)
    assert made.status_code == 303  # a form of the primary's pages changes nothing here
    page = await admin.get(f"{FAILOVER}?hidden=1")
    assert "That page is the primary" in page.text
    assert "https://127.0.0.9:8443/login" in page.text
    assert 'href="/login/users"' not in page.text and 'href="/console"' not in page.text
    assert 'href="/login/audit"' in page.text and 'href="/login/management/security"' in page.text
    assert (await admin.get("/login/audit")).status_code == 200


async def test_breaking_a_pair_whose_peer_is_gone_says_so_and_leaves_this_one_standalone(
    admin: Client, tmp_path: Path
) -> None:
    alone = await post_form(admin, FAILOVER, f"{FAILOVER}/break")
    assert alone.status_code == 409 and "not in a failover pair" in alone.text
    peer = Peer("127.0.0.9", 9, "ab" * 32)  # nothing listens there
    state.write_pair(tmp_path / "appliance" / "state", Pair(Role.PRIMARY, peer))
    broken = await post_form(admin, FAILOVER, f"{FAILOVER}/break")
    assert broken.status_code == 200 and "The pair is broken" in broken.text
    assert "127.0.0.9:9 could not be told" in broken.text
    assert 'id="failover-role">none<' in broken.text
    audit = await admin.get("/login/audit")
    assert "failover.break" in audit.text


async def test_role_changes_on_the_page_refuse_or_force_and_a_split_brain_shows_its_fix(
    admin: Client, tmp_path: Path
) -> None:
    alone = await post_form(admin, FAILOVER, f"{FAILOVER}/become-primary", sync_first="1")
    assert alone.status_code == 409 and "not in a failover pair" in alone.text
    forged = await admin.post(f"{FAILOVER}/become-backup", data={"csrf_token": "forged"})
    assert forged.status_code == 403

    await post_form(admin, PAGE, f"{PAGE}/key", key=KEY, confirm_key=KEY)
    state_dir = tmp_path / "appliance" / "state"
    peer = Peer("127.0.0.9", 9, "ab" * 32)  # nothing listens there
    state.write_pair(state_dir, Pair(Role.PRIMARY, peer, "2026-01-01T00:00:00+00:00"))
    page = await admin.get(FAILOVER)
    assert "Become Backup" in page.text and "not checked yet" in page.text
    refused = await post_form(admin, FAILOVER, f"{FAILOVER}/become-backup", sync_first="1")
    assert refused.status_code == 409 and "Nothing changed" in refused.text
    assert 'id="failover-role">primary<' in refused.text
    forced = await post_form(admin, FAILOVER, f"{FAILOVER}/become-backup", force="1")
    assert forced.status_code == 200 and 'id="failover-role">backup<' in forced.text
    assert "forced: the peer was not told" in forced.text

    state.record_status(state_dir, "2026-01-01T00:01:00+00:00", "ok", "primary", "")
    state.record_status(
        state_dir, "2026-01-01T00:02:00+00:00", "split brain", "backup", "Both are backup."
    )
    page = await admin.get(FAILOVER)
    assert 'id="split-brain"' in page.text and "Both are backup." in page.text
    assert page.text.count("<tr><td>2026-01-01T00:0") == 2  # the status history
    unreachable = await post_form(admin, FAILOVER, f"{FAILOVER}/fix-split-brain")
    assert unreachable.status_code == 409 and "could not be reached" in unreachable.text
    back = await admin.get(f"{FAILOVER}/become-primary", follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == FAILOVER


async def test_a_backup_refuses_site_changes_through_the_api_a_restore_and_a_reset(
    app: FastAPI, admin: Client, tmp_path: Path
) -> None:
    peer = Peer("127.0.0.9", 8443, "ab" * 32)
    state.write_pair(tmp_path / "appliance" / "state", Pair(Role.BACKUP, peer))
    for method, path in (
        ("POST", "/api/v1/accounts"),
        ("PATCH", "/api/v1/jump-clients/1"),
        ("PUT", "/api/v1/vault/credentials/9223372036854775807"),
        ("DELETE", "/api/v1/api-clients/1"),
        ("POST", "/api/v1/console/sessions"),
    ):
        refused = await admin.request(method, path, json={})
        assert refused.status_code == 409, (method, path)
        error = refused.json()["error"]["message"]
        assert "backup of a failover pair" in error and "https://127.0.0.9:8443" in error
    assert (await admin.get("/api/v1/accounts")).status_code == 401  # reads are not refused
    assert (await admin.post("/api/v1/updates/check")).status_code == 401  # the machine's own
    assert (await admin.get("/api/v1/failover")).status_code == 401

    site = app.state.runtime.part(BackupSite)
    with pytest.raises(ConflictError, match="a restore is refused here"):
        backups.restore(site, APPLIANCE, io.BytesIO(b"not read"), "passphrase")
    basics = "/appliance/status/basics"
    reset = await post_form(admin, basics, f"{basics}/factory-reset", confirmation="RESET")
    assert "a reset to factory defaults is refused here" in reset.text
    assert (tmp_path / "appliance" / "state" / "failover.json").exists()


async def test_the_sync_interval_and_the_site_address_check_on_the_page(
    admin: Client, tmp_path: Path
) -> None:
    peer = Peer("127.0.0.9", 9, "ab" * 32)
    state.write_pair(tmp_path / "appliance" / "state", Pair(Role.PRIMARY, peer))
    page = await admin.get(FAILOVER)
    assert 'id="seconds"' in page.text and 'value="300"' in page.text
    short = await post_form(admin, FAILOVER, f"{FAILOVER}/sync-interval", seconds="59")
    assert short.status_code == 400 and "between 60 and 86400 seconds" in short.text
    saved = await post_form(admin, FAILOVER, f"{FAILOVER}/sync-interval", seconds="900")
    assert saved.status_code == 200 and "every 900 seconds" in saved.text
    assert 'value="900"' in saved.text
    huge = await post_form(admin, FAILOVER, f"{FAILOVER}/sync-interval", seconds="9" * 40)
    assert huge.status_code == 422

    nothing = await post_form(admin, FAILOVER, f"{FAILOVER}/site-check")
    assert nothing.status_code == 409 and "Nothing answered at https://" in nothing.text

    state.write_pair(tmp_path / "appliance" / "state", Pair(Role.BACKUP, peer))
    page = await admin.get(FAILOVER)
    assert 'id="sync-interval"' in page.text and 'id="seconds"' not in page.text
    refused = await post_form(admin, FAILOVER, f"{FAILOVER}/sync-interval", seconds="600")
    assert refused.status_code == 409 and "set it on the primary" in refused.text
