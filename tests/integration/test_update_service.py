"""The vendor's update service as a real process, with a real SMTP server."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import ssl
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import httpx
import pytest
from _update_env import UpdateService, Vendor, free_port, service
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from tuf.api.metadata import Metadata, Targets
from typer.testing import CliRunner

from bastion.releases.download_key import load_appliance_key, make_download_key
from bastion.releases.versions import ReleaseKind, ReleaseState, parse_version
from bastion.update_service.cli import update_service_app
from bastion.update_service.store import HandoutRow, ReleaseRow, open_database
from bastion.updates.client import UpdateClient

HOST, SMTP_HOST = "127.0.0.21", "127.0.0.23"
S, LATE, LAPSED = "support.acme.example", "late.acme.example", "old.lapsed.example"
BASE, SITE = ReleaseKind.BASE, ReleaseKind.SITE
ON_BASE_10 = {BASE: parse_version("1.0"), SITE: parse_version("1.0")}


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, _server: object, _session: object, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"

    def bodies_to(self, address: str) -> list[str]:
        found = [m for m in self.messages if address in m.rcpt_tos]
        return [bytes(m.content).decode() for m in found]  # type: ignore[arg-type]


@dataclass
class World:
    vendor: Vendor
    service: UpdateService
    root: Path
    mailbox: Mailbox

    @property
    def url(self) -> str:
        return self.service.url

    def client(self, name: str, site: str = S) -> UpdateClient:
        key = self.vendor.appliance(site, name, self.root / name / "state" / "appliance.pem")
        root, tls = self.vendor.trusted_root(), self.service.tls()
        return UpdateClient(self.root / name, site, name, root, self.url, key, tls=tls)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Publish base 1.1 and site 1.1 (needs base 1.1) for S; open wave 1 with e-mail."""
    root = tmp_path_factory.mktemp("update-service")
    mailbox, smtp_port = Mailbox(), free_port(SMTP_HOST)
    controller = Controller(mailbox, hostname=SMTP_HOST, port=smtp_port)
    controller.start()
    vendor = Vendor(root / "vendor")
    vendor.init()
    vendor.customer("acme")
    vendor.customer("lapsed", contract_end="2020-01-01")
    vendor.site(S, "acme", wave=1)
    vendor.site(LATE, "acme", wave=2)
    vendor.site(LAPSED, "lapsed", wave=1)
    vendor.release("base", "1.1")
    vendor.release("site", "1.1", "--site", S, "--requires", "base>=1.1")
    mail = [
        "--smtp-host",
        SMTP_HOST,
        "--smtp-port",
        str(smtp_port),
        "--mail-from",
        "rel@vendor.example",
    ]
    for spec in ("base:1.1", f"site:1.1@{S}"):
        vendor.admin("open-wave", spec, "--wave", "1", *mail)
    try:
        with service(vendor, HOST) as running:
            yield World(vendor, running, root, mailbox)
    finally:
        controller.stop()


def states(found: list) -> dict[str, ReleaseState]:  # type: ignore[type-arg]
    return {s.release.name: s.assessment.state for s in found}


def test_customer_in_open_wave_is_emailed_once(world: World) -> None:
    bodies = world.mailbox.bodies_to("ops@acme.example")
    assert len(bodies) == 2
    assert "base:1.1" in bodies[0] and f"site:1.1@{S}" in bodies[1]
    assert "Subject: Bastion: an upgrade is ready" in bodies[0]
    assert world.mailbox.bodies_to("ops@lapsed.example") == []


def test_end_to_end_online_then_offline(world: World) -> None:
    a1 = world.client("a1")
    found = a1.check(ON_BASE_10)
    assert states(found) == {"base 1.1": ReleaseState.INSTALLABLE, "site 1.1": ReleaseState.BLOCKED}
    site = next(s for s in found if s.release.name == "site 1.1")
    assert [r.name for r in site.assessment.blocked_by] == ["base 1.1"]
    base = next(s for s in found if s.release.name == "base 1.1")
    seen: list[tuple[int, int]] = []
    path = a1.download(base, lambda done, total: seen.append((done, total)))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == base.target.hashes["sha256"]
    assert seen[-1] == (base.target.length, base.target.length)
    after = {**ON_BASE_10, BASE: parse_version("1.1")}
    assert states(a1.check(after))["site 1.1"] is ReleaseState.INSTALLABLE

    a2 = world.client("a2")
    key = a2.make_download_key(ON_BASE_10)
    bundle = world.root / "a2.tar"
    response = world.service.post("/api/v1/bundles", json={"download_key": key})
    assert response.status_code == 200, response.text
    bundle.write_bytes(response.content)
    imported = a2.import_bundle(bundle, ON_BASE_10).statuses
    assert states(imported) == states(found)
    stored = {p.name for p in a2.packages_dir.iterdir()}
    assert {s.target.hashes["sha256"] for s in found} <= stored
    assert [s.release.name for s in a2.plan(ON_BASE_10, imported)] == ["base 1.1", "site 1.1"]

    again = a2.make_download_key(ON_BASE_10)
    offers = world.service.post("/api/v1/offers", json={"download_key": again}).json()
    assert {r["release"]: r["state"] for r in offers["releases"]} == {
        "base 1.1": "taken",
        "site 1.1": "taken",
    }


def handouts(world: World, appliance: str) -> list[tuple[str, str]]:
    """(release spec, key nonce) of every handout to `appliance`, in order."""
    sessions = open_database(world.vendor.data)
    try:
        with sessions() as s:
            rows = s.execute(
                select(ReleaseRow.spec, HandoutRow.key_nonce)
                .join(ReleaseRow, ReleaseRow.id == HandoutRow.release_id)
                .where(HandoutRow.appliance_id == appliance)
                .order_by(HandoutRow.id)
            )
            return [(spec, nonce) for spec, nonce in rows]
    finally:
        sessions.kw["bind"].dispose()


def test_a_new_key_gets_again_what_was_handed_out_and_a_used_key_is_refused(
    world: World,
) -> None:
    """A bundle that arrived damaged is not lost: a new download key gets it again."""
    a3 = world.client("a3")
    first_key = a3.make_download_key(ON_BASE_10)
    first = world.service.post("/api/v1/bundles", json={"download_key": first_key})
    assert first.status_code == 200, first.text
    again = world.service.post("/api/v1/bundles", json={"download_key": first_key})
    assert again.status_code == 409, again.text
    detail = again.json()["detail"]
    assert "already answered" in detail and "make a new key" in detail
    page = world.service.post("/download-key", data={"download_key": first_key})
    assert page.status_code == 409 and "already answered" in page.text
    second_key = a3.make_download_key(ON_BASE_10)
    offers = world.service.post("/api/v1/offers", json={"download_key": second_key}).json()
    assert {r["state"] for r in offers["releases"]} == {"taken"}
    second = world.service.post("/api/v1/bundles", json={"download_key": second_key})
    assert second.status_code == 200, second.text
    bundle = world.root / "a3-second.tar"
    bundle.write_bytes(second.content)
    imported = a3.import_bundle(bundle, ON_BASE_10)
    assert states(imported.statuses) == {
        "base 1.1": ReleaseState.INSTALLABLE,
        "site 1.1": ReleaseState.BLOCKED,
    }
    nonces = [nonce for _, nonce in handouts(world, "a3")]
    assert len(nonces) == 4 and len(set(nonces)) == 2


def test_download_page_answers_with_a_bundle(world: World) -> None:
    a5 = world.client("a5")
    page = world.service.get("/")
    assert "Appliance Download Key" in page.text
    answer = world.service.post(
        "/download-key", data={"download_key": a5.make_download_key(ON_BASE_10)}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-tar"
    bundle = world.root / "a5.tar"
    bundle.write_bytes(answer.content)
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert "bundle.json" in names and "metadata/timestamp.json" in names
    assert sum(n.startswith("targets/") for n in names) == 2


def refused(world: World, key: str) -> httpx.Response:
    response = world.service.post("/api/v1/bundles", json={"download_key": key})
    assert response.status_code == 403, response.text
    return response


def test_forged_download_key_is_refused(world: World) -> None:
    world.client("a6")
    forged = make_download_key(Ed25519PrivateKey.generate(), S, "a6", {"base": "1.0"})
    assert "signature does not verify" in refused(world, forged).json()["detail"]


def test_unknown_appliance_is_refused(world: World) -> None:
    stranger = make_download_key(Ed25519PrivateKey.generate(), S, "nobody", {"base": "1.0"})
    assert "is not enrolled" in refused(world, stranger).json()["detail"]


def test_key_made_with_a_wrong_clock_is_refused(world: World) -> None:
    a7 = world.client("a7")
    late = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2, minutes=3)
    stale = a7.make_download_key(ON_BASE_10, clock=late)
    detail = refused(world, stale).json()["detail"]
    assert "The appliance's clock is wrong: it is 2 h 3 min" in detail and "behind" in detail
    page = world.service.post("/download-key", data={"download_key": stale})
    assert page.status_code == 403 and "clock is wrong" in page.text
    reopened = world.service.get("/download-key")  # the address left in the browser's bar
    assert reopened.status_code == 303 and reopened.headers["location"] == "/"


def test_key_claiming_another_site_is_refused(world: World) -> None:
    a8 = world.client("a8")
    key = make_download_key(load_appliance_key(a8.appliance_key), LATE, "a8", {"base": "1.0"})  # type: ignore[arg-type]
    assert "belongs to another site" in refused(world, key).json()["detail"]


def test_wave_and_contract_limit_what_a_site_sees(world: World) -> None:
    late = world.client("late-1", site=LATE)
    assert states(late.check(ON_BASE_10)) == {}
    lapsed = world.client("lapsed-1", site=LAPSED)
    assert states(lapsed.check(ON_BASE_10)) == {}
    world.vendor.admin("set-wave", LATE, "--wave", "1")
    assert states(late.check(ON_BASE_10)) == {"base 1.1": ReleaseState.INSTALLABLE}


def test_serve_refuses_to_start_without_keys_and_names_them(tmp_path: Path) -> None:
    vendor = Vendor(tmp_path)
    vendor.init()
    (vendor.keys / "snapshot.pem").unlink()
    args = ["serve", "--data", str(vendor.data), "--keys", str(vendor.keys)]
    result = CliRunner().invoke(update_service_app, args)
    assert result.exit_code == 1
    assert "missing signing keys for: snapshot" in result.output
    assert "snapshot.pem" in result.output


def test_init_refuses_fewer_root_keys_than_threshold(tmp_path: Path) -> None:
    vendor = Vendor(tmp_path)
    vendor.run("keygen", "--keys", str(vendor.keys), "--root-keys", "1")
    output = vendor.admin("init-repo", "--root-threshold", "2", ok=False)
    assert "root (needs 2, found 1" in output


def test_expiring_metadata_is_resigned_with_the_same_targets(tmp_path: Path) -> None:
    vendor = Vendor(tmp_path)
    vendor.init("targets=6s", "snapshot=6s", "timestamp=6s")
    vendor.customer("acme")
    vendor.site(S, "acme")
    vendor.release("base", "1.1")
    vendor.admin("open-wave", "base:1.1", "--wave", "1")
    metadata = vendor.site_dir(S) / "metadata"
    before = Metadata[Targets].from_file(str(max(metadata.glob("*.targets.json"))))
    assert "re-signed: nothing" in vendor.admin("refresh")
    time.sleep(3.2)
    assert f"re-signed: {S}" in vendor.admin("refresh")
    versions = sorted(int(p.name.split(".")[0]) for p in metadata.glob("*.targets.json"))
    after = Metadata[Targets].from_file(str(metadata / f"{versions[-1]}.targets.json"))
    assert after.signed.version == before.signed.version + 1
    assert after.signed.targets == before.signed.targets
    assert after.signed.expires > before.signed.expires


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address(host))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port(SMTP_HOST)
    controller = Controller(box, hostname=SMTP_HOST, port=port)
    controller.start()
    yield box, port
    controller.stop()


def wait_for(condition: Callable[[], object], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_serving_over_tls_mails_waves_that_opened(
    tmp_path: Path, smtp: tuple[Mailbox, int]
) -> None:
    """The serving process sends the notices due (here: a wave opened without mail)."""
    mailbox, smtp_port = smtp
    vendor = Vendor(tmp_path)
    vendor.init()
    vendor.customer("acme")
    vendor.site(S, "acme")
    vendor.release("base", "1.2")
    vendor.admin("open-wave", "base:1.2", "--wave", "1")
    host = "127.0.0.27"
    certfile, keyfile = self_signed(tmp_path, host)
    port = free_port(host)
    command = [sys.executable, "-m", "bastion.update_service.cli", "update-service", "serve"]
    command += ["--data", str(vendor.data), "--keys", str(vendor.keys)]
    command += [
        "--listen",
        f"{host}:{port}",
        "--certfile",
        str(certfile),
        "--keyfile",
        str(keyfile),
    ]
    env = {**os.environ, "BASTION_UPDATE_SERVICE_SMTP_HOST": SMTP_HOST}
    env["BASTION_UPDATE_SERVICE_SMTP_PORT"] = str(smtp_port)
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=env)
    context = ssl.create_default_context(cafile=str(certfile))
    url = f"https://{host}:{port}/sites/{S}/metadata/timestamp.json"
    try:
        wait_for(lambda: _get_or_none(url, context))
        answer = httpx.get(url, verify=context)
        assert answer.json()["signed"]["x-bastion-site"] == S
        wait_for(lambda: mailbox.bodies_to("ops@acme.example"))
        assert "base:1.2" in mailbox.bodies_to("ops@acme.example")[0]
    finally:
        process.terminate()
        process.communicate(timeout=10)


def _get_or_none(url: str, context: ssl.SSLContext) -> httpx.Response | None:
    try:
        return httpx.get(url, verify=context, timeout=1)
    except httpx.TransportError:
        return None
