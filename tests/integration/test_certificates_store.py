"""The certificate store against a real appliance process over real TLS (R2, R36-R40)."""

from __future__ import annotations

import base64
import html
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import (
    RunningAppliance,
    appliance_command,
    start_appliance,
)
from tests.support.appliance import test_environment as appliance_environment
from tests.support.pki import TestCa, served_fingerprint
from tests.support.web import change_password, csrf_of, sign_in

HOST = "127.0.0.61"
SITE = "site.example.test"
PAGE = "/appliance/security/certificates"
P12_PASSPHRASE = "correct horse battery staple"
PLAIN_KEY_MARKERS = (b"BEGIN PRIVATE KEY", b"BEGIN EC PRIVATE KEY", b"BEGIN RSA PRIVATE KEY")


@pytest.fixture(scope="module")
def ca() -> TestCa:
    return TestCa()


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    tmp = tmp_path_factory.mktemp("certificates")
    with start_appliance(tmp, host=HOST, extra_args=["--hostname", SITE]) as running:
        yield running


def trusting(appliance: RunningAppliance, ca: TestCa) -> ssl.SSLContext:
    """Trusts both the appliance's internal CA and the test CA."""
    context = ssl.create_default_context(cafile=str(appliance.ca_file))
    context.load_verify_locations(cadata=ca.pem().decode())
    return context


@pytest.fixture(scope="module")
def api(appliance: RunningAppliance, ca: TestCa) -> Iterator[httpx.Client]:
    token = get_token(appliance, create_client(appliance, "certificates")).json()["access_token"]
    verify = trusting(appliance, ca)
    with httpx.Client(base_url=appliance.url, verify=verify, headers=bearer(token)) as client:
        yield client


@pytest.fixture(scope="module")
def browser(appliance: RunningAppliance, ca: TestCa) -> Iterator[httpx.Client]:
    verify = trusting(appliance, ca)
    with httpx.Client(
        base_url=appliance.url, verify=verify, timeout=15, follow_redirects=True
    ) as client:
        sign_in(client, "admin", "password")
        change_password(client, "password", "keeper of the certificate store")
        yield client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def store(api: httpx.Client) -> list[dict[str, Any]]:
    response = api.get("/api/v1/certificates")
    assert response.status_code == 200, response.text
    return list(response.json())


def by_fingerprint(api: httpx.Client, fingerprint: str) -> dict[str, Any]:
    return next(c for c in store(api) if c["fingerprint"] == fingerprint)


def default_of(api: httpx.Client) -> dict[str, Any]:
    return next(c for c in store(api) if c["is_default"])


def served(appliance: RunningAppliance) -> str:
    return served_fingerprint(appliance.host, appliance.port, SITE)


def kinds(certificate: dict[str, Any]) -> set[str]:
    return {w["kind"] for w in certificate["warnings"]}


def assert_no_plain_private_key(data_dir: Path) -> None:
    for path in data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(marker in content for marker in PLAIN_KEY_MARKERS), path


def upload_page_form(client: httpx.Client, files: dict[str, Any], **fields: str) -> httpx.Response:
    token = csrf_of(client.get(PAGE))
    return client.post(f"{PAGE}/import", data={"csrf_token": token, **fields}, files=files)


def page_post(client: httpx.Client, action: str, **fields: str) -> httpx.Response:
    token = csrf_of(client.get(PAGE))
    return client.post(action, data={"csrf_token": token, **fields})


def test_first_start_serves_the_internal_certificate_from_the_store(
    appliance: RunningAppliance, api: httpx.Client
) -> None:
    listed = store(api)
    assert [(c["source"], c["is_default"]) for c in listed] == [("internal", True)]
    assert SITE in listed[0]["names"] and HOST in listed[0]["names"]
    assert served(appliance) == listed[0]["fingerprint"]
    certs_dir = appliance.data_dir / "certs"
    assert not (certs_dir / "site.key").exists() and not (certs_dir / "internal-ca.key").exists()
    assert_no_plain_private_key(appliance.data_dir)


def test_an_imported_pkcs12_is_served_to_new_connections_without_a_restart(
    appliance: RunningAppliance, api: httpx.Client, ca: TestCa
) -> None:
    site = ca.issue([SITE, HOST])
    p12 = ca.pkcs12(site, P12_PASSPHRASE)
    response = api.post(
        "/api/v1/certificates/upload",
        files={"pkcs12": ("site.p12", p12, "application/x-pkcs12")},
        data={"passphrase": P12_PASSPHRASE},
    )
    assert response.status_code == 201, response.text
    imported = response.json()
    assert imported["fingerprint"] == site.fingerprint and imported["has_private_key"]
    assert not kinds(imported) & {"hostname_not_covered", "expired", "chain_incomplete"}
    pid = appliance.process.pid

    chosen = api.put(f"/api/v1/certificates/{imported['id']}/default", json={})

    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["is_default"]
    assert served(appliance) == site.fingerprint
    assert appliance.process.poll() is None and appliance.process.pid == pid
    ca_file = appliance.data_dir.parent / "test-ca.pem"
    ca_file.write_bytes(ca.pem())
    s_client = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"{HOST}:{appliance.port}",
            "-servername",
            SITE,
            "-CAfile",
            str(ca_file),
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert f"CN = {SITE}" in s_client.stdout
    assert "Verify return code: 0 (ok)" in s_client.stdout
    assert_no_plain_private_key(appliance.data_dir)


def export(api: httpx.Client, certificate_id: int, **body: Any) -> httpx.Response:
    return api.post(f"/api/v1/certificates/{certificate_id}/export", json=body)


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=20)


def test_exports_open_with_openssl_and_keys_need_a_passphrase(
    api: httpx.Client, tmp_path: Path
) -> None:
    default = default_of(api)
    p12 = export(api, default["id"], private_key=True, chain=True, passphrase="export pass 1")
    assert p12.status_code == 200, p12.text
    assert p12.headers["content-type"] == "application/x-pkcs12"
    (tmp_path / "site.p12").write_bytes(p12.content)
    p12_file = str(tmp_path / "site.p12")
    info = openssl("pkcs12", "-info", "-noenc", "-in", p12_file, "-passin", "pass:export pass 1")
    assert info.returncode == 0, info.stderr
    assert info.stdout.count("BEGIN CERTIFICATE") == 2 and "PRIVATE KEY" in info.stdout

    pem = export(api, default["id"], private_key=True, format="pem", passphrase="export pass 2")
    assert pem.status_code == 200 and b"ENCRYPTED PRIVATE KEY" in pem.content
    (tmp_path / "site.pem").write_bytes(pem.content)
    x509_out = openssl(
        "x509", "-in", str(tmp_path / "site.pem"), "-noout", "-fingerprint", "-sha256"
    )
    assert (
        x509_out.stdout.split("=", 1)[1].strip().replace(":", "").lower() == default["fingerprint"]
    )
    pkey = ["pkey", "-in", str(tmp_path / "site.pem"), "-noout", "-passin"]
    assert openssl(*pkey, "pass:export pass 2").returncode == 0
    assert openssl(*pkey, "pass:not the passphrase").returncode != 0

    unprotected = export(api, default["id"], private_key=True, format="pem")
    assert unprotected.status_code == 400 and "passphrase" in unprotected.json()["error"]["message"]
    confirmed = export(
        api, default["id"], private_key=True, format="pem", allow_unprotected_key=True
    )
    assert confirmed.status_code == 200 and b"BEGIN PRIVATE KEY" in confirmed.content


def test_bad_input_leaves_the_store_unchanged(
    api: httpx.Client, browser: httpx.Client, ca: TestCa
) -> None:
    before = store(api)
    site, other = ca.issue([SITE]), ca.issue([SITE])

    wrong = api.post(
        "/api/v1/certificates/import",
        json={"pkcs12": b64(ca.pkcs12(site, P12_PASSPHRASE)), "passphrase": "wrong"},
    )
    assert wrong.status_code == 400 and "passphrase is wrong" in wrong.json()["error"]["message"]
    mismatch = api.post(
        "/api/v1/certificates/import",
        json={"certificate": b64(site.certificate_pem()), "private_key": b64(other.key_pem())},
    )
    assert mismatch.status_code == 400
    assert "does not belong" in mismatch.json()["error"]["message"]
    default = default_of(api)
    refused = api.delete(f"/api/v1/certificates/{default['id']}")
    assert refused.status_code == 409 and "in use" in refused.json()["error"]["message"]

    big = b"-----BEGIN CERTIFICATE-----\n" + b"A" * (1024 * 1024) + b"\n"
    oversized = upload_page_form(browser, {"certificate_file": ("huge.pem", big)})
    assert oversized.status_code == 400 and "larger than 1 MiB" in html.unescape(oversized.text)
    huge = upload_page_form(browser, {"certificate_file": ("huge.pem", big * 5)})
    assert huge.status_code == 400 and "too large" in html.unescape(huge.text)
    api_big = api.post("/api/v1/certificates/import", json={"certificate": b64(big)})
    assert api_big.status_code == 400 and "1 MiB" in api_big.json()["error"]["message"]

    assert store(api) == before


def test_an_expired_default_needs_an_acknowledgement_and_keeps_its_warning(
    appliance: RunningAppliance, api: httpx.Client, browser: httpx.Client, ca: TestCa
) -> None:
    valid = default_of(api)
    expired = ca.issue([SITE, HOST], days=30, start=datetime.now(UTC) - timedelta(days=60))
    imported = upload_page_form(
        browser,
        {
            "certificate_file": ("expired.pem", expired.certificate_pem()),
            "private_key_file": ("expired.key", expired.key_pem()),
            "chain_file": ("chain.pem", ca.pem()),
        },
    )
    assert imported.status_code == 200 and "The certificate was imported." in imported.text
    row = by_fingerprint(api, expired.fingerprint)
    assert "expired" in kinds(row)
    action = f"{PAGE}/{row['id']}/default"

    refused = page_post(browser, action)
    assert refused.status_code == 400 and "expired on" in html.unescape(refused.text)
    assert default_of(api)["fingerprint"] == valid["fingerprint"] == served(appliance)

    accepted = page_post(browser, action, accept_expired="true")
    assert accepted.status_code == 200 and "new connections get it now" in accepted.text
    assert served(appliance) == expired.fingerprint
    shown = browser.get(PAGE).text
    assert re.search(r'data-kind="expired">Expired on', shown)
    assert "expired" in kinds(default_of(api))

    back = api.put(f"/api/v1/certificates/{valid['id']}/default", json={})
    assert back.status_code == 200 and served(appliance) == valid["fingerprint"]


def test_a_signing_request_is_completed_by_its_signed_certificate(
    api: httpx.Client, browser: httpx.Client, ca: TestCa
) -> None:
    created = page_post(browser, f"{PAGE}/request", names=f"{SITE} www.{SITE}")
    assert created.status_code == 200 and "copy its CSR" in created.text
    pending = [c for c in store(api) if c["pending_request"]][-1]
    assert pending["has_private_key"] and pending["request_pem"].startswith(
        "-----BEGIN CERTIFICATE"
    )
    shown = html.unescape(created.text)
    assert pending["request_pem"].strip() in shown
    signed = ca.sign_request(pending["request_pem"].encode(), [SITE, f"www.{SITE}"])
    pem = signed.public_bytes(serialization.Encoding.PEM)
    completed = upload_page_form(browser, {"certificate_file": ("signed.pem", pem)})
    assert completed.status_code == 200, completed.text

    row = next(c for c in store(api) if c["id"] == pending["id"])
    assert not row["pending_request"] and row["has_private_key"]
    assert row["issuer"] == ca.certificate.subject.rfc4514_string()


def test_self_signed_certificates_are_created_and_deleted(api: httpx.Client) -> None:
    created = api.post(
        "/api/v1/certificates/self-signed", json={"names": [SITE], "validity_days": 30}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["source"] == "self-signed" and "expiring_soon" in kinds(body)
    assert api.delete(f"/api/v1/certificates/{body['id']}").status_code == 204
    assert api.get(f"/api/v1/certificates/{body['id']}").status_code == 404


def test_certificate_names_are_host_names_on_the_api_and_the_page(
    api: httpx.Client, browser: httpx.Client
) -> None:
    before = store(api)
    long_name = "a" * 63 + "." + "b" * 63 + ".example"
    made = api.post(
        "/api/v1/certificates/self-signed", json={"names": ["Bücher.example", long_name]}
    )
    assert made.status_code == 201, made.text
    assert made.json()["names"] == ["xn--bcher-kva.example", long_name]
    for refused_name in ("a b", "x" * 64 + ".example", "*.*.example", "bad!!"):
        refused = api.post("/api/v1/certificates/requests", json={"names": [refused_name]})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["message"].startswith(repr(refused_name))
    page = page_post(browser, f"{PAGE}/self-signed", names="good.example bad!!")
    assert page.status_code == 400 and "&#39;bad!!&#39; is not a host name" in page.text
    assert len(store(api)) == len(before) + 1
    assert api.delete(f"/api/v1/certificates/{made.json()['id']}").status_code == 204


def wait_served(appliance: RunningAppliance, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert appliance.process.poll() is None, appliance.log()
        try:
            return served(appliance)
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the appliance did not serve again:\n{appliance.log()}")


def test_after_a_restart_the_default_is_still_served(
    appliance: RunningAppliance, api: httpx.Client, browser: httpx.Client, tmp_path: Path
) -> None:
    default = default_of(api)
    api.close()
    browser.close()  # no open connection holds up the graceful stop
    assert appliance.stop() == 0
    log_path = tmp_path / "restart.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            appliance_command(
                appliance.data_dir,
                [f"{appliance.host}:{appliance.port}"],
                ["--hostname", SITE],
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=appliance_environment(),
        )
    restarted = RunningAppliance(
        appliance.host, appliance.port, appliance.data_dir, log_path, process
    )
    try:
        assert wait_served(restarted) == default["fingerprint"]
        assert_no_plain_private_key(appliance.data_dir)
    finally:
        assert restarted.stop() == 0
