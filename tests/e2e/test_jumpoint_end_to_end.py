"""SSH through a Jumpoint end to end, all real processes: an appliance, a Jumpoint
installed from its own installer and run as its service runs (`bastion jumpoint …`), a
real OpenSSH server with no agent on another loopback address, and the access console.

An administrator vaults the server's key (or, for a server that takes passwords, a
password) and makes an SSH Jump Item pinning the server's host key; a representative
granted its Jump Group jumps to it and runs a command. The session is reported and
recorded like a Jump Client's; the vaulted secret appears in no API answer, page,
recording, console output or log. A changed host key and a refused credential are clear
refusals with nothing relayed; a changed host key is pinned again on the item's page;
bad input is a 4xx, never a 500.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.support import web
from tests.support.endpoints import Client, bastion, eventually
from tests.support.sessions import (
    PASSWORD,
    Site,
    clients,
    console,
    online_endpoint,
    representative,
    session_site,
    signed_in_console,
)
from tests.support.sshd import SshServer, keypair, ssh_server

SITE = "jumpoints.example.test"
HOST = "127.0.0.144"
SSH_HOST = "127.0.0.145"
PASSWORD_HOST = "127.0.0.146"
MAX_ID = 2**63 - 1


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with session_site(tmp_path_factory.mktemp("jumpoints"), HOST, SITE) as running:
        yield running


@pytest.fixture(scope="module")
def jumpoint(site: Site) -> Iterator[Client]:
    with online_endpoint(site, group="Jumpoints", kind="jumpoint") as client:
        yield client


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with ssh_server(tmp_path_factory.mktemp("sshd"), SSH_HOST) as server:
        yield server


def jumpoint_id(site: Site) -> int:
    return int(next(c["id"] for c in clients(site) if c["kind"] == "jumpoint"))


def vault(site: Site, name: str, secret: str) -> dict[str, Any]:
    made = site.api.post(
        "/api/v1/vault/credentials", json={"name": name, "kind": "private_key", "secret": secret}
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def item_body(site: Site, sshd: SshServer, credential: int, **changes: Any) -> dict[str, Any]:
    body = {
        "name": "db-ssh",
        "jumpoint_id": jumpoint_id(site),
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "credential_id": credential,
        "host_key": sshd.host_key,
        "jump_group": "Databases",
    }
    return body | changes


def sessions_of(site: Site, username: str) -> list[dict[str, Any]]:
    found = site.api.get("/api/v1/sessions", params={"username": username}).json()
    return [s for s in found["sessions"] if not s["live"]]


def test_a_representative_reaches_an_ssh_server_through_the_jumpoint(
    site: Site, jumpoint: Client, sshd: SshServer, tmp_path: Path
) -> None:
    secret_line = sshd.client_key.strip().splitlines()[1]
    stored = vault(site, "ops key", sshd.client_key)
    assert stored["kind"] == "private_key" and secret_line not in json.dumps(stored)
    made = site.api.post("/api/v1/jumpoints/ssh-items", json=item_body(site, sshd, stored["id"]))
    assert made.status_code == 201, made.text
    assert made.json()["credential_name"] == "ops key"

    representative(site, "dba", ["Databases"])
    home = signed_in_console(site, "dba")
    listed = console(home, "list")
    assert listed.returncode == 0 and "db-ssh" in listed.stdout, listed.stdout + listed.stderr
    assert "Jumpoints" not in listed.stdout  # the Jumpoint itself is no shell to jump to

    jumped = console(home, "jump", "db-ssh", stdin="echo hello-$((6*7))\nexit 3\n")
    assert jumped.returncode == 3, jumped.stdout + jumped.stderr
    assert "hello-42" in jumped.stdout

    eventually(lambda: bool(sessions_of(site, "dba")), 30, "the session's record")
    (report,) = sessions_of(site, "dba")
    assert report["jump_client_name"] == "db-ssh"
    assert report["jump_client_hostname"] == f"{sshd.username}@{sshd.host}:{sshd.port}"
    assert "3" in report["end_reason"] and report["bytes_from_endpoint"] > 0
    eventually(lambda: bool(sessions_of(site, "dba")[0]["recording_sha256"]), 30, "recording")
    recording = site.api.get(f"/api/v1/sessions/{report['id']}/recording")
    assert recording.status_code == 200 and "hello-42" in recording.text

    seen = [jumped.stdout + jumped.stderr, recording.text, site.appliance.log(), jumpoint.output()]
    for path in (
        "/api/v1/vault/credentials",
        f"/api/v1/vault/credentials/{stored['id']}",
        "/api/v1/jumpoints/ssh-items",
        "/api/v1/sessions",
        "/api/v1/jump-clients",
        "/api/v1/audit",
    ):
        answer = site.api.get(path)
        assert answer.status_code == 200, (path, answer.text)
        seen.append(answer.text)
    with site.appliance.client() as browser:
        web.sign_in(browser, "dba", PASSWORD)
        page = browser.get("/console")
        assert page.status_code == 200 and "db-ssh" in page.text
        seen.append(page.text)
    for text in seen:
        assert secret_line not in text and "PRIVATE KEY" not in text
    assert "Traceback" not in site.appliance.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="a password server needs a mount namespace")
def test_a_vaulted_password_reaches_a_server_that_takes_passwords(
    site: Site, jumpoint: Client, tmp_path: Path
) -> None:
    password = "vaulted " + tmp_path.name[-12:] + " pass phrase"
    with ssh_server(tmp_path / "sshd", PASSWORD_HOST, password=password) as server:
        made = site.api.post(
            "/api/v1/vault/credentials",
            json={"name": "db password", "kind": "password", "secret": password},
        )
        assert made.status_code == 201 and password not in made.text, made.text
        body = item_body(site, server, made.json()["id"], name="pw-ssh")
        assert site.api.post("/api/v1/jumpoints/ssh-items", json=body).status_code == 201
        representative(site, "dba4", ["Databases"])
        home = signed_in_console(site, "dba4")
        jumped = console(home, "jump", "pw-ssh", stdin="echo with-$((50-8))\nexit 4\n")
        assert jumped.returncode == 4, jumped.stdout + jumped.stderr
        assert "with-42" in jumped.stdout and password not in jumped.stdout + jumped.stderr
        assert "Accepted password for" in server.log.read_text(errors="replace")
    eventually(lambda: bool(sessions_of(site, "dba4")), 30, "the session's record")
    (report,) = sessions_of(site, "dba4")
    eventually(lambda: bool(sessions_of(site, "dba4")[0]["recording_sha256"]), 30, "recording")
    recording = site.api.get(f"/api/v1/sessions/{report['id']}/recording").text
    listed = site.api.get("/api/v1/vault/credentials").text
    assert "with-42" in recording and password not in recording + listed
    assert password not in site.appliance.log() + jumpoint.output()


def passphrase_key(path: Path, passphrase: str, pem: bool = False) -> tuple[str, str]:
    """A key pair whose private key is protected by `passphrase` (OpenSSH form, or PEM
    PKCS#8 with `pem`)."""
    kind = ["-t", "rsa", "-b", "2048", "-m", "PKCS8"] if pem else ["-t", "ed25519"]
    command = ["ssh-keygen", "-q", *kind, "-N", passphrase, "-f", str(path)]
    subprocess.run(command, check=True, capture_output=True)
    return path.read_text(), path.with_suffix(".pub").read_text().strip()


def test_a_key_protected_by_a_passphrase_is_opened_once_and_signs_in(
    site: Site, jumpoint: Client, sshd: SshServer, tmp_path: Path
) -> None:
    creds = "/api/v1/vault/credentials"
    passphrase = "Schlüssel-Paßwort 🔑 " + tmp_path.name[-8:]
    locked, public = passphrase_key(tmp_path / "locked", passphrase)
    pem_locked, pem_public = passphrase_key(tmp_path / "pem_locked", passphrase, pem=True)
    assert "ENCRYPTED PRIVATE KEY" in pem_locked
    with pytest.raises(TypeError, match="password-protected"):  # really locked
        serialization.load_ssh_private_key(locked.encode(), password=None)
    authorized = sshd.log.parent / "authorized_keys"
    authorized.write_text(authorized.read_text() + public + "\n" + pem_public + "\n")
    before = site.api.get(creds).json()

    def refused(body: dict[str, str], words: str) -> None:
        answer = site.api.post(creds, json={"name": "locked key", **body})
        assert answer.status_code == 400 and words in answer.text, answer.text
        assert passphrase not in answer.text

    key = {"kind": "private_key", "secret": locked}
    refused(key, "protected by a passphrase; give the passphrase too")
    refused(key | {"passphrase": "not " + passphrase}, "passphrase does not open this private key")
    refused({"kind": "password", "secret": "pw", "passphrase": passphrase}, "private key only")
    refused(
        {"kind": "private_key", "secret": sshd.client_key, "passphrase": passphrase},
        "has no passphrase",
    )
    assert site.api.get(creds).json() == before  # nothing was stored

    stored = site.api.post(creds, json={"name": "locked key", **key, "passphrase": passphrase})
    assert stored.status_code == 201, stored.text
    body = item_body(site, sshd, stored.json()["id"], name="locked-ssh")
    assert site.api.post("/api/v1/jumpoints/ssh-items", json=body).status_code == 201
    representative(site, "dba5", ["Databases"])
    home = signed_in_console(site, "dba5")
    jumped = console(home, "jump", "locked-ssh", stdin="echo opened-$((40+2))\nexit 5\n")
    assert jumped.returncode == 5 and "opened-42" in jumped.stdout, jumped.stdout + jumped.stderr

    replaced = site.api.put(
        f"{creds}/{stored.json()['id']}",
        json={"kind": "private_key", "secret": pem_locked, "passphrase": passphrase},
    )
    assert replaced.status_code == 200, replaced.text
    again = console(home, "jump", "locked-ssh", stdin="echo pem-$((40+2))\nexit 6\n")
    assert again.returncode == 6 and "pem-42" in again.stdout, again.stdout + again.stderr
    used = sshd.log.read_text(errors="replace")
    for line in (public, pem_public):  # each key signed in: sshd logs its fingerprint
        fingerprint = subprocess.run(
            ["ssh-keygen", "-lf", "-"], input=line, capture_output=True, text=True, check=True
        ).stdout.split()[1]
        assert f"Accepted publickey for {sshd.username}" in used and fingerprint in used
    said = site.appliance.log() + jumpoint.output() + site.api.get("/api/v1/audit").text
    assert passphrase not in said and "PRIVATE KEY" not in said


def test_a_changed_host_key_is_refused_and_nothing_is_relayed(
    site: Site, jumpoint: Client, sshd: SshServer, tmp_path: Path
) -> None:
    _, other_key = keypair(tmp_path / "other_host", "another server")
    credential = vault(site, "changed-key test", sshd.client_key)["id"]
    body = item_body(site, sshd, credential, name="moved-ssh", host_key=other_key)
    made = site.api.post("/api/v1/jumpoints/ssh-items", json=body)
    assert made.status_code == 201, made.text
    representative(site, "dba2", ["Databases"])
    home = signed_in_console(site, "dba2")
    before = len(sshd.log.read_bytes())

    jumped = console(home, "jump", "moved-ssh", stdin="echo should-not-run\n")
    said = jumped.stdout + jumped.stderr
    assert jumped.returncode == 255, said
    assert "not the one pinned for this Jump Item; nothing was sent to it" in said
    assert "should-not-run" not in said
    eventually(lambda: b"[preauth]" in sshd.log.read_bytes()[before:], 10, "sshd's log")
    attempt = sshd.log.read_bytes()[before:].decode(errors="replace")
    assert "publickey" not in attempt and f"for {sshd.username}" not in attempt

    eventually(lambda: bool(sessions_of(site, "dba2")), 30, "the session's record")
    assert "255" in sessions_of(site, "dba2")[0]["end_reason"]


def test_a_credential_the_server_refuses_is_a_clear_refusal(
    site: Site, jumpoint: Client, sshd: SshServer, tmp_path: Path
) -> None:
    stranger, _ = keypair(tmp_path / "stranger", "not authorized")
    credential = vault(site, "stale key", stranger)["id"]
    body = item_body(site, sshd, credential, name="stale-ssh")
    assert site.api.post("/api/v1/jumpoints/ssh-items", json=body).status_code == 201
    representative(site, "dba3", ["Databases"])
    home = signed_in_console(site, "dba3")

    jumped = console(home, "jump", "stale-ssh", stdin="echo should-not-run\n")
    said = jumped.stdout + jumped.stderr
    assert jumped.returncode == 255, said
    assert "refused the vaulted credential" in said and "should-not-run" not in said
    in_use = site.api.delete(f"/api/v1/vault/credentials/{credential}")
    assert in_use.status_code == 409 and "stale-ssh" in in_use.json()["error"]["message"]


def test_bad_input_is_refused_with_what_was_wrong(
    site: Site, jumpoint: Client, sshd: SshServer
) -> None:
    api = site.api
    credential = vault(site, "Schlüssel für 服务器", sshd.client_key)
    assert credential["name"] == "Schlüssel für 服务器"

    def refused(answer: httpx.Response, status: int, words: str) -> None:
        assert answer.status_code == status, answer.text
        assert words in answer.text, answer.text

    creds, items = "/api/v1/vault/credentials", "/api/v1/jumpoints/ssh-items"
    refused(api.post(creds, json={"name": "x", "kind": "password", "secret": ""}), 422, "secret")
    bad_key = {"name": "y", "kind": "private_key", "secret": "-----BEGIN nonsense"}
    refused(api.post(creds, json=bad_key), 400, "private key")
    refused(api.post(creds, json={**bad_key, "name": "Schlüssel für 服务器"}), 400, "private key")
    refused(api.get(f"{creds}/{MAX_ID}"), 404, "no credential")
    refused(api.get(f"{creds}/{MAX_ID + 1}"), 422, "")
    refused(api.delete(f"{items}/{MAX_ID}"), 404, "no SSH Jump Item")

    good = item_body(site, sshd, credential["id"], name="Datenbank ☃")
    refused(api.post(items, json=good | {"host_key": "not a key"}), 400, "OpenSSH public key")
    refused(api.post(items, json=good | {"host": "bad host!"}), 400, "not a host name")
    refused(api.post(items, json=good | {"username": "-oProxyCommand=x"}), 400, "user name")
    refused(api.post(items, json=good | {"jumpoint_id": MAX_ID}), 404, "no Jumpoint")
    refused(api.post(items, json=good | {"jumpoint_id": MAX_ID + 1}), 404, "no Jumpoint")
    refused(api.post(items, json=good | {"credential_id": float(MAX_ID)}), 400, "no credential")
    refused(api.post(items, json=good | {"credential_id": MAX_ID}), 400, "no credential")
    made = api.post(items, json=good)
    assert made.status_code == 201 and made.json()["name"] == "Datenbank ☃", made.text
    refused(api.post(items, json=good), 409, "exists already")

    opened = api.post("/api/v1/console/sessions", json={"jump_item_id": MAX_ID, "kind": "ssh"})
    assert 400 <= opened.status_code < 500, opened.text
    assert "Traceback" not in site.appliance.log()


def test_a_jumpoint_installer_installs_no_jump_client(site: Site, tmp_path: Path) -> None:
    answer = site.api.post("/api/v1/jump-clients/installers", json={"kind": "jumpoint"})
    assert answer.status_code == 201, answer.text
    installer = tmp_path / "jumpoint-installer.json"
    installer.write_text(answer.json()["installer"])
    done = bastion("jump-client", "install", str(installer), "--dir", str(tmp_path / "state"))
    assert done.returncode == 2
    assert "is a Jumpoint installer" in done.stdout and "bastion jumpoint install" in done.stdout
    assert not (tmp_path / "state" / "identity.key").exists()
    unit = subprocess.run(
        [sys.executable, "-m", "bastion", "jumpoint", "systemd-unit", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "bastion jumpoint run --dir" in unit.stdout


def test_an_administrator_manages_the_vault_and_items_on_the_page(
    site: Site, jumpoint: Client, sshd: SshServer
) -> None:
    page = "/login/jump/jumpoints"
    secret = "a page-typed pass phrase " + sshd.host_key[-12:]
    with site.appliance.client(timeout=60) as browser:
        web.sign_in(browser, "admin", "password")
        assert (
            web.change_password(browser, "password", "a long jumpoint pass phrase").status_code
            == 303
        )
        stored = web.submit(
            browser, page, f"{page}/credentials", name="page pw", kind="password", secret=secret
        )
        assert stored.status_code == 303, stored.text
        refused = web.submit(
            browser, page, f"{page}/credentials", name="page key", kind="private_key", secret=secret
        )
        assert refused.status_code == 400 and "OpenSSH or PEM key file" in refused.text
        assert secret not in refused.text  # a refused form does not echo the secret back
        locked, _ = passphrase_key(site.tmp / "page_locked", "page pass phrase")
        form = {"name": "page locked key", "kind": "private_key", "secret": locked}
        unopened = web.submit(browser, page, f"{page}/credentials", **form)
        assert unopened.status_code == 400 and "give the passphrase too" in unopened.text
        opened = web.submit(
            browser, page, f"{page}/credentials", **form, passphrase="page pass phrase"
        )
        assert opened.status_code == 303, opened.text
        assert "page pass phrase" not in browser.get(page).text
        credential = next(
            c["id"]
            for c in site.api.get("/api/v1/vault/credentials").json()
            if c["name"] == "page pw"
        )
        fields = {
            "name": "page-ssh", "jumpoint_id": str(jumpoint_id(site)), "host": sshd.host,
            "port": str(sshd.port), "username": sshd.username, "credential_id": str(credential),
            "jump_group": "Databases",
        }  # fmt: skip
        bad = web.submit(browser, page, f"{page}/ssh-items", **fields, host_key="nonsense")
        assert bad.status_code == 400 and "OpenSSH public key" in bad.text
        made = web.submit(browser, page, f"{page}/ssh-items", **fields, host_key=sshd.host_key)
        assert made.status_code == 303, made.text
        shown = browser.get(page)
        assert shown.status_code == 200 and "page-ssh" in shown.text and "page pw" in shown.text
        assert secret not in shown.text and "PRIVATE KEY" not in shown.text
        vaulted_key = sshd.client_key.strip().splitlines()[1]  # the first test's, used in a session
        for admin_page in ("/login/reports", "/login/jump/jump-clients", "/login/audit"):
            answer = browser.get(admin_page)
            assert answer.status_code == 200, admin_page
            assert vaulted_key not in answer.text and secret not in answer.text
        listed = browser.get("/login/jump/jump-clients").text
        assert '<span class="badge">Jumpoint</span>' in listed  # told apart from Jump Clients
        item = next(
            i for i in site.api.get("/api/v1/jumpoints/ssh-items").json() if i["name"] == "page-ssh"
        )
        gone = web.submit(browser, page, f"{page}/ssh-items/{item['id']}/delete")
        assert gone.status_code == 303
        deleted = web.submit(browser, page, f"{page}/credentials/{credential}/delete")
        assert deleted.status_code == 303
        assert "page-ssh" not in browser.get(page).text


def test_an_administrator_pins_a_changed_host_key_on_the_items_page(
    site: Site, jumpoint: Client, sshd: SshServer, tmp_path: Path
) -> None:
    """The page's edit form is the API's PUT (one use case): refusals keep what was typed
    and say why in #form-error, a saved change says so in #notice, the secret is never
    on the page, and a session after the change reaches the server."""
    _, old_key = keypair(tmp_path / "old_host", "the server before it was rebuilt")
    stored = vault(site, "repin key", sshd.client_key)
    other = vault(site, "another key", keypair(tmp_path / "other_client", "other")[0])
    body = item_body(site, sshd, stored["id"], name="rebuilt-ssh", host_key=old_key)
    made = site.api.post("/api/v1/jumpoints/ssh-items", json=body)
    assert made.status_code == 201, made.text
    item = made.json()["id"]
    taken = site.api.post("/api/v1/jumpoints/ssh-items", json=body | {"name": "taken-ssh"})
    assert taken.status_code == 201, taken.text
    representative(site, "pages-admin", [], role="administrator")
    representative(site, "dba-repin", ["Databases"])
    page = f"/login/jump/jumpoints/ssh-items/{item}"
    secret_line = sshd.client_key.strip().splitlines()[1]
    fields = {
        "name": "rebuilt-ssh ☃", "jumpoint_id": str(jumpoint_id(site)), "host": sshd.host,
        "port": str(sshd.port), "username": sshd.username, "credential_id": str(stored["id"]),
        "jump_group": "Databases", "tag": "rebuilt", "comments": "re-pinned after the rebuild",
    }  # fmt: skip
    with site.appliance.client(timeout=60) as browser:
        web.sign_in(browser, "pages-admin", PASSWORD)
        listed = browser.get("/login/jump/jumpoints")
        assert f'href="{page}"' in listed.text
        shown = browser.get(page)
        assert shown.status_code == 200 and 'id="edit-ssh-item"' in shown.text
        assert old_key.split()[1] in shown.text and "repin key" in shown.text
        assert secret_line not in shown.text and "PRIVATE KEY" not in shown.text
        assert browser.get(f"/login/jump/jumpoints/ssh-items/{MAX_ID}").status_code == 404

        forged = browser.post(page, data={**fields, "host_key": sshd.host_key})
        assert forged.status_code == 403  # no CSRF token: nothing changes

        bad = web.submit(browser, page, page, **fields, host_key="nonsense")
        assert bad.status_code == 400 and 'id="form-error"' in bad.text
        assert "OpenSSH public key" in bad.text
        assert "rebuilt-ssh ☃" in bad.text and "re-pinned after the rebuild" in bad.text
        assert secret_line not in bad.text
        clash = web.submit(
            browser, page, page, **fields | {"name": "taken-ssh"}, host_key=sshd.host_key
        )
        assert clash.status_code == 409 and "exists already" in clash.text
        unchanged = site.api.get(f"/api/v1/jumpoints/ssh-items/{item}").json()
        assert unchanged["host_key"].split() == old_key.split()[:2]

        saved = web.submit(
            browser, page, page, **fields | {"credential_id": str(other["id"])},
            host_key=sshd.host_key,
        )  # fmt: skip
        assert saved.status_code == 303 and saved.headers["location"] == f"{page}?saved=1"
        after = browser.get(saved.headers["location"])
        assert 'id="notice"' in after.text and "is saved" in after.text
        assert "another key" in after.text and secret_line not in after.text
        again = web.submit(browser, page, page, **fields, host_key=sshd.host_key)
        assert again.status_code == 303, again.text

    now = site.api.get(f"/api/v1/jumpoints/ssh-items/{item}").json()
    assert now["name"] == "rebuilt-ssh ☃"
    assert now["host_key"].split() == sshd.host_key.split()[:2]
    assert (now["tag"], now["comments"]) == ("rebuilt", "re-pinned after the rebuild")
    assert now["credential_name"] == "repin key"
    home = signed_in_console(site, "dba-repin")
    jumped = console(home, "jump", "rebuilt-ssh ☃", stdin="echo repinned-$((6*7))\nexit 0\n")
    assert jumped.returncode == 0 and "repinned-42" in jumped.stdout, jumped.stdout + jumped.stderr
    audit = site.api.get("/api/v1/audit", params={"action": "jumpoints.ssh_item.replace"})
    assert audit.status_code == 200 and "rebuilt-ssh" in audit.text
    assert "Traceback" not in site.appliance.log()
