"""The integration client without a site: what counts as saved whole, what a killed pass
leaves and how the next one cleans it, intervals, and its calls against a fake site."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
import typer

from bastion.integration_client.cli import parse_every
from bastion.integration_client.errors import VersionMismatchError, WrongSecretError
from bastion.integration_client.site import SiteClient, site_url
from bastion.integration_client.store import Saved, Store

SESSION = "00000000-0000-4000-8000-000000000001"


def saved_session(root: Path) -> Store:
    store = Store.open(root)
    cast = b'{"version": 2}\n[0.1, "o", "hello"]\n'
    store.recording_path(SESSION).write_bytes(cast)
    report = store.save_report(SESSION, {"id": SESSION})
    store.mark_saved(SESSION, Saved(report, hashlib.sha256(cast).hexdigest()))
    return store


def test_a_saved_session_is_intact_until_a_file_changes(tmp_path: Path) -> None:
    store = saved_session(tmp_path)
    assert Store.open(tmp_path).intact(SESSION)
    store.recording_path(SESSION).write_bytes(b"changed")
    assert not Store.open(tmp_path).intact(SESSION)
    saved_session(tmp_path)
    store.report_path(SESSION).unlink()
    assert not Store.open(tmp_path).intact(SESSION)


def test_temporary_files_of_a_killed_pass_are_removed_and_never_kept(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    final = store.recording_path(SESSION)
    left = final.with_name(f".{final.name}.part")
    left.write_bytes(b"half")
    Store.open(tmp_path)
    assert not left.exists()
    with pytest.raises(RuntimeError), store.temporary(final) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert not temp.exists() and not final.exists()


def test_an_unreadable_state_means_everything_is_checked_again(tmp_path: Path) -> None:
    saved_session(tmp_path)
    (tmp_path / "state.json").write_text('{"saved": {"x": {"unknown": 1}}}')
    assert Store.open(tmp_path).saved == {}
    (tmp_path / "state.json").write_text("not json")
    assert Store.open(tmp_path).saved == {}


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("1h30m", 5400), ("1d", 86400)]
)
def test_intervals(text: str, seconds: float) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "0s", "1w", "15 m", "-1m"])
def test_intervals_that_are_not(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_every(text)


def test_the_refusal_names_the_version_to_install() -> None:
    message = str(VersionMismatchError("1.1.0", "1.0.0"))
    assert message == (
        "The site runs Bastion 1.1.0; this integration client is 1.0.0. Install the "
        "integration client 1.1.0 (pip install bastion==1.1.0, or from the site's downloads) "
        "and run it again."
    )


def test_site_addresses() -> None:
    assert site_url("https://bastion.example.org:8443/") == "https://bastion.example.org:8443"
    for wrong in ("http://h", "https://h/api", "h:443"):
        with pytest.raises(Exception, match="site"):
            site_url(wrong)


def test_the_token_is_renewed_before_it_expires() -> None:
    tokens: list[str] = []

    def site(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/oauth/token":
            tokens.append(f"t{len(tokens)}")
            return httpx.Response(200, json={"access_token": tokens[-1], "expires_in": 0})
        assert request.headers["Authorization"] == f"Bearer {tokens[-1]}"
        return httpx.Response(200, json={"total": 0, "sessions": []})

    with SiteClient("https://site.test", transport=httpx.MockTransport(site)) as client:
        client.sign_in("id", "secret")
        assert list(client.sessions()) == []
    assert tokens == ["t0", "t1"]


def test_a_wrong_secret_is_named_as_such() -> None:
    def site(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"type": "x", "message": "wrong secret"}})

    client = SiteClient("https://site.test", transport=httpx.MockTransport(site))
    with client, pytest.raises(WrongSecretError, match=r"wrong secret.*--client-secret-file"):
        client.sign_in("id", "secret")
