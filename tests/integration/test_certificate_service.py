"""The certificate service and TLS serving with a real SQLite database, vault and TLS context."""

from __future__ import annotations

import contextlib
import hashlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine

from bastion.certificates import service as certificates
from bastion.certificates import tls
from bastion.certificates.formats import ExportSelection
from bastion.certificates.key_vault import KeyVault
from bastion.certificates.repository import CertificateRepository
from bastion.certificates.site import SiteCertificates
from bastion.certificates.x509 import CertificateBundle
from bastion.platform import audit
from bastion.platform.db.engine import make_engine, migrate, session_factory
from bastion.platform.errors import ConflictError, InvalidInputError
from bastion.platform.principals import Actor, Principal, Role
from bastion.platform.settings import ApplianceSettings
from bastion.platform.unit_of_work import UnitOfWork
from tests.support.pki import TestCa

SITE = "site.example.test"
ACTOR = Actor(Principal("tester", Role.ADMINISTRATOR), "test")
CONTEXT = certificates.StoreContext(SITE)


@dataclass
class Store:
    settings: ApplianceSettings
    engine: Engine
    uow: UnitOfWork
    vault: KeyVault

    def fresh(self) -> UnitOfWork:
        return UnitOfWork(session_factory(self.engine))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    settings = ApplianceSettings(data_dir=tmp_path, hostname=SITE)
    settings.db_dir.mkdir(parents=True)
    engine = make_engine(settings.sqlalchemy_url())
    migrate(engine)
    with UnitOfWork(session_factory(engine)) as uow:
        yield Store(settings, engine, uow, tls.open_vault(settings.certs_dir))
    engine.dispose()


def fingerprints(uow: UnitOfWork) -> list[str]:
    return [row.fingerprint for row in uow.repository(CertificateRepository).all()]


def test_a_request_is_completed_by_its_certificate_alone(store: Store) -> None:
    ca = TestCa()
    request = certificates.create_request(store.uow, store.vault, ACTOR, CONTEXT, [SITE])
    assert request.pending_request and request.request_pem is not None
    signed = ca.sign_request(request.request_pem.encode(), [SITE])

    pem = signed.public_bytes(serialization.Encoding.PEM)
    completed = certificates.import_pem(store.uow, store.vault, ACTOR, CONTEXT, pem, chain=ca.pem())

    assert completed.id == request.id and not completed.pending_request
    assert completed.has_private_key and completed.issuer.endswith("Bastion test root CA")
    exported = certificates.export(
        store.uow, store.vault, ACTOR, completed.id, ExportSelection(True, True, True), "pem", "pw"
    )
    assert b"ENCRYPTED PRIVATE KEY" in exported.data
    actions = [entry.action for entry in audit.page(store.uow)[0]]
    assert actions[:3] == ["certificate.export", "certificate.complete", "certificate.request"]


def test_the_same_certificate_is_not_imported_twice(store: Store) -> None:
    issued = TestCa().issue([SITE])
    args = (store.uow, store.vault, ACTOR, CONTEXT, issued.certificate_pem(), issued.key_pem())
    certificates.import_pem(*args)
    with pytest.raises(ConflictError, match="already in the store"):
        certificates.import_pem(*args)
    assert fingerprints(store.uow) == [issued.fingerprint]


def test_a_certificate_without_its_key_cannot_be_the_default_or_export_one(store: Store) -> None:
    issued = TestCa().issue([SITE])
    view = certificates.import_pem(store.uow, store.vault, ACTOR, CONTEXT, issued.certificate_pem())
    with pytest.raises(InvalidInputError, match="no matching private key"):
        certificates.set_default(store.uow, store.vault, ACTOR, CONTEXT, view.id)
    with pytest.raises(InvalidInputError, match="no private key"):
        certificates.export(
            store.uow, store.vault, ACTOR, view.id, ExportSelection(True, True), "pkcs12", "pw"
        )
    assert store.uow.repository(CertificateRepository).default() is None


def test_only_a_certificate_not_in_use_is_deleted(store: Store) -> None:
    ca = TestCa()
    first, second = ca.issue([SITE]), ca.issue([SITE])
    for issued in (first, second):
        certificates.import_pem(
            store.uow, store.vault, ACTOR, CONTEXT, issued.certificate_pem(), issued.key_pem()
        )
    rows = store.uow.repository(CertificateRepository).all()
    certificates.set_default(store.uow, store.vault, ACTOR, CONTEXT, rows[0].id)
    with pytest.raises(ConflictError, match="in use"):
        certificates.delete(store.uow, ACTOR, rows[0].id)
    certificates.delete(store.uow, ACTOR, rows[1].id)
    assert fingerprints(store.uow) == [first.fingerprint]


def handshake_fingerprint(server: ssl.SSLContext) -> str:
    """The certificate ``server`` presents, through an in-memory TLS handshake."""
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname, client_context.verify_mode = False, ssl.CERT_NONE
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    client = client_context.wrap_bio(pipes[0], pipes[1], server_hostname=SITE)
    served = server.wrap_bio(pipes[1], pipes[0], server_side=True)
    for _ in range(10):
        for end in (client, served):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def test_serving_changes_the_shared_context_and_refuses_a_broken_bundle(tmp_path: Path) -> None:
    ca = TestCa()
    first, second = ca.issue([SITE]), ca.issue([SITE])
    tls.write_served(tmp_path, CertificateBundle(first.certificate, first.key, (ca.certificate,)))
    context = tls.server_context(tmp_path)
    assert handshake_fingerprint(context) == first.fingerprint == tls.serving(context)

    tls.serve(context, tmp_path, CertificateBundle(second.certificate, second.key))
    assert handshake_fingerprint(context) == second.fingerprint == tls.serving(context)

    served = tls.paths(tmp_path).served.read_bytes()
    broken = CertificateBundle(first.certificate, second.key)
    with pytest.raises(ssl.SSLError):
        tls.serve(context, tmp_path, broken)
    assert tls.paths(tmp_path).served.read_bytes() == served
    assert handshake_fingerprint(context) == second.fingerprint == tls.serving(context)
    assert list(tls.paths(tmp_path).served.parent.iterdir()) == [tls.paths(tmp_path).served]
    assert b"ENCRYPTED PRIVATE KEY" in served and b"BEGIN PRIVATE KEY" not in served


def test_what_a_context_serves_is_known_even_after_another_process_rewrote_the_file(
    tmp_path: Path,
) -> None:
    """An install's new worker writes `certs/active/` at its start; a worker serving
    since before (kept after a rollback) still serves what it loaded, and says so: the
    failover key's proof is bound to that."""
    ca = TestCa()
    first, second = ca.issue([SITE]), ca.issue([SITE])
    tls.write_served(tmp_path, CertificateBundle(first.certificate, first.key, (ca.certificate,)))
    context = tls.server_context(tmp_path)
    tls.write_served(tmp_path, CertificateBundle(second.certificate, second.key))
    assert handshake_fingerprint(context) == first.fingerprint == tls.serving(context)
    tls.load_served(context, tmp_path)  # as a gateway does once it sees the file change
    assert handshake_fingerprint(context) == second.fingerprint == tls.serving(context)
    assert list(tls.paths(tmp_path).served.parent.iterdir()) == [tls.paths(tmp_path).served]


def test_a_key_left_in_plain_files_moves_into_the_store(store: Store) -> None:
    issued = TestCa().issue([SITE])
    certs_dir = store.settings.certs_dir
    (certs_dir / "site.pem").write_bytes(issued.certificate_pem())
    (certs_dir / "site.key").write_bytes(issued.key_pem())
    (certs_dir / "internal-ca.key").write_bytes(issued.key_pem())

    SiteCertificates(certs_dir, SITE, store.fresh).prepare([])

    with store.fresh() as uow:
        default = uow.repository(CertificateRepository).default()
        assert default is not None and default.fingerprint == issued.fingerprint
    assert not any(
        (certs_dir / name).exists() for name in ("site.pem", "site.key", "internal-ca.key")
    )
    assert tls.paths(certs_dir).served.exists()
