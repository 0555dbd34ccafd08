"""Moving a site to a new appliance, end to end (R36-R40), with two real appliance processes.

A (127.0.0.11) holds accounts, API clients, settings and an imported certificate. Its
certificate is exported with key and chain, a backup is downloaded; a new appliance B
(127.0.0.12) is set up, imports the certificate, makes it default and restores the backup.
Then every account signs in on B, B serves A's certificate, and A is reset and shut down.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.pki import TestCa
from tests.support.web import change_password, csrf_of, sign_in, submit

SITE = "support.example.test"
PASSPHRASE = "moving day passphrase"
PEOPLE = {"alice": "her own long secret", "bob.rep": "another long secret!"}


def make_pkcs12(tmp_path: Path) -> tuple[bytes, Path]:
    """A site certificate for SITE signed by a private CA; returns (PKCS#12, CA file)."""
    ca = TestCa("Example Private CA")
    ca_file = tmp_path / "private-ca.pem"
    ca_file.write_bytes(ca.pem())
    return ca.pkcs12(ca.issue([SITE], days=365), "import me"), ca_file


def trusting(appliance: RunningAppliance, ca_file: Path) -> RunningAppliance:
    """Clients of `appliance` trust the private CA; they reach it by address, not by SITE."""
    appliance.trust.append(ca_file)
    appliance.verify_hostname = False
    return appliance


def api_for(appliance: RunningAppliance, name: str) -> httpx.Client:
    token = get_token(appliance, create_client(appliance, name)).json()["access_token"]
    return appliance.client(headers=bearer(token), timeout=60)


def served_fingerprint(appliance: RunningAppliance) -> str:
    """What `openssl s_client` is given by a new connection that asks for SITE."""
    result = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"{appliance.host}:{appliance.port}",
            "-servername",
            SITE,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )
    pem = result.stdout[result.stdout.index("-----BEGIN CERTIFICATE-----") :]
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.fingerprint(hashes.SHA256()).hex()


def import_as_default(api: httpx.Client, p12: bytes, passphrase: str) -> dict[str, object]:
    body = {"pkcs12": base64.b64encode(p12).decode(), "passphrase": passphrase}
    imported = api.post("/api/v1/certificates/import", json=body)
    assert imported.status_code == 201, imported.text
    made = api.put(f"/api/v1/certificates/{imported.json()['id']}/default", json={})
    assert made.status_code == 200, made.text
    return dict(made.json())


def test_a_site_moves_to_a_new_appliance(tmp_path: Path) -> None:
    p12, ca_file = make_pkcs12(tmp_path)
    env = {"BASTION_TRUST_ANCHORS_FILE": str(ca_file)}
    extra = ["--hostname", SITE]
    with (
        start_appliance(tmp_path, host="127.0.0.11", extra_args=extra, env=env) as a,
        api_for(trusting(a, ca_file), "migration") as api_a,
    ):
        for name, password in PEOPLE.items():
            created = api_a.post(
                "/api/v1/accounts",
                json={"username": name, "password": password, "role": "representative"},
            )
            assert created.status_code == 201
        assert (
            api_a.put("/api/v1/network/ntp", json={"server": "ntp.example.test"}).status_code == 200
        )
        certificate = import_as_default(api_a, p12, "import me")
        exported = api_a.post(
            f"/api/v1/certificates/{certificate['id']}/export",
            json={
                "certificate": True,
                "private_key": True,
                "chain": True,
                "format": "pkcs12",
                "passphrase": PASSPHRASE,
            },
        )
        assert exported.status_code == 200, exported.text
        backup = api_a.post("/api/v1/backups", json={"passphrase": PASSPHRASE})
        assert backup.status_code == 200
        a_fingerprint = served_fingerprint(a)

        with start_appliance(tmp_path, host="127.0.0.12", extra_args=extra, env=env) as b:
            trusting(b, ca_file)
            with b.client() as browser:
                assert (
                    sign_in(browser, "admin", "password").headers["location"]
                    == "/login/change-password"
                )
                assert browser.get("/login/home").headers["location"] == "/login/change-password"
                assert change_password(browser, "password", "b's interim secret").status_code == 303
            with api_for(b, "setup") as api_b:
                made = import_as_default(api_b, exported.content, PASSPHRASE)
                assert made["warnings"] == [], made["warnings"]
                restored = api_b.post(
                    "/api/v1/backups/restore",
                    content=backup.content,
                    headers={"X-Backup-Passphrase": PASSPHRASE},
                )
                assert restored.status_code == 200, restored.text
            for name, password in PEOPLE.items():
                with b.client() as browser:
                    assert sign_in(browser, name, password).status_code == 303, name
            assert served_fingerprint(b) == a_fingerprint
            with api_for(b, "after") as api_b:
                assert api_b.get("/api/v1/network/ntp").json() == {"server": "ntp.example.test"}
                names = {c["name"] for c in api_b.get("/api/v1/api-clients").json()}
                assert "migration" in names

        with a.client() as browser:
            sign_in(browser, "admin", "password")
            change_password(browser, "password", "a's final secret")
            page = browser.get("/appliance/status/basics")
            refused = browser.post(
                "/appliance/status/basics/factory-reset",
                data={"csrf_token": csrf_of(page), "confirmation": "reset"},
            )
            assert refused.status_code == 400 and "Type RESET" in refused.text
            reset = submit(
                browser,
                "/appliance/status/basics",
                "/appliance/status/basics/factory-reset",
                confirmation="RESET",
            )
            assert reset.status_code == 200 and "admin" in reset.text
        assert served_fingerprint(a) != a_fingerprint  # a new internal certificate
        with a.client() as browser:
            assert sign_in(browser, "alice", PEOPLE["alice"]).status_code == 401
            assert (
                sign_in(browser, "admin", "password").headers["location"]
                == "/login/change-password"
            )
            change_password(browser, "password", "a's last secret")
            done = submit(browser, "/appliance/status/basics", "/appliance/status/basics/shut-down")
            assert done.status_code == 200
        assert a.process.wait(timeout=30) == 0
