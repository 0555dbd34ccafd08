"""The certificate store's X.509 work, checked against the real ``openssl`` binary."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from bastion.certificates import internal_ca
from bastion.certificates.formats import (
    ExportFormat,
    ExportSelection,
    KeyKind,
    UnprotectedKeyError,
    create_csr,
    create_self_signed,
    export_bundle,
    export_pem,
    export_pkcs12,
    generate_private_key,
    import_pem,
    import_pkcs12,
)
from bastion.certificates.key_vault import KeyVault, KeyVaultError
from bastion.certificates.rules import (
    CertificateError,
    KeyType,
    WarningKind,
    certificate_warnings,
    choose_default,
    warning_kinds,
)
from bastion.certificates.x509 import (
    CertificateBundle,
    CertificatePassphraseError,
    KeyMismatchError,
    NotACertificateError,
    NotAPrivateKeyError,
    describe,
    fingerprint,
    load_certificate,
    load_private_key,
    load_system_trust_roots,
    parse_certificate,
)
from tests.conftest import skip_or_fail

NOW = datetime.now(UTC)
SITE = "support.example.com"
PASS = "export passphrase 1"
ALL = ExportSelection(certificate=True, private_key=True, chain=True)


@pytest.fixture
def needs_openssl() -> None:
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl command is not installed")


# -- a small certificate authority ------------------------------------------------

CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: tuple[x509.Name, CertificateIssuerPrivateKeyTypes] | None,
    *,
    ca: bool,
    names: tuple[str, ...] = (),
    days: tuple[int, int] = (-1, 365),
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + timedelta(days=days[0]))
        .not_valid_after(NOW + timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if ca:
        builder = builder.add_extension(CA_KEY_USAGE, critical=True)
    if names:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
        builder = builder.add_extension(san, False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: CertificateIssuerPrivateKeyTypes
    intermediate_key: CertificateIssuerPrivateKeyTypes

    @property
    def bundle(self) -> CertificateBundle:
        return CertificateBundle(self.leaf, self.leaf_key, (self.intermediate,))

    def issue_leaf(self, key: CertificateIssuerPrivateKeyTypes, **kw: object) -> x509.Certificate:
        issuer = (self.intermediate.subject, self.intermediate_key)
        return _issue("leaf", key, issuer, ca=False, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pki() -> Pki:
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_days = (-1000, 3650)
    root = _issue("Test Root", root_key, None, ca=True, days=ca_days)
    inter = _issue("Test Intermediate", inter_key, (root.subject, root_key), ca=True, days=ca_days)
    leaf = _issue(SITE, leaf_key, (inter.subject, inter_key), ca=False, names=(SITE,))
    return Pki(root, inter, leaf, leaf_key, inter_key)


def _openssl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], capture_output=True, timeout=30)


# -- describing: what the administrator sees --------------------------------------


def test_imported_ca_certificate_with_chain_has_no_warnings(pki: Pki) -> None:
    info = describe(pki.bundle, trust_roots=[pki.root], now=NOW)
    assert info.chain_complete and info.chain_trusted and info.key_matches
    assert (info.key_type, info.key_size) == (KeyType.EC, 256)
    assert info.fingerprint == fingerprint(pki.leaf)
    assert certificate_warnings(info, now=NOW, site_hostname=SITE) == []
    assert choose_default(info, now=NOW, site_hostname=SITE).warnings == ()


def test_parse_pem_file_with_chain_and_der(pki: Pki) -> None:
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (pki.leaf, pki.intermediate))
    info = parse_certificate(pem, trust_roots=[pki.root], now=NOW)
    assert info.chain_trusted and not info.has_private_key
    assert info.subject == f"CN={SITE}" and info.issuer == "CN=Test Intermediate"
    der = parse_certificate(pki.leaf.public_bytes(serialization.Encoding.DER), now=NOW)
    assert der.fingerprint == info.fingerprint and not der.chain_complete


def test_missing_intermediate_is_reported(pki: Pki) -> None:
    info = describe(CertificateBundle(pki.leaf, pki.leaf_key), trust_roots=[pki.root], now=NOW)
    assert not info.chain_complete and not info.chain_trusted
    warnings = certificate_warnings(info, now=NOW, site_hostname=SITE)
    assert warning_kinds(warnings) == {WarningKind.CHAIN_INCOMPLETE}


def test_self_signed_is_complete_but_not_trusted() -> None:
    bundle = create_self_signed([SITE, "10.0.0.5"], validity_days=90, now=NOW)
    info = describe(bundle, trust_roots=[], now=NOW)
    assert info.chain_complete and not info.chain_trusted
    assert info.san_names == (SITE, "10.0.0.5")
    kinds = warning_kinds(certificate_warnings(info, now=NOW, site_hostname="10.0.0.5"))
    assert kinds == {WarningKind.CHAIN_NOT_TRUSTED}
    trusted = describe(bundle, trust_roots=[bundle.certificate], now=NOW)
    assert trusted.chain_trusted


def test_the_internal_ca_trusts_what_it_issued_and_nothing_of_another_appliance(
    tmp_path: Path,
) -> None:
    """A fresh appliance's own certificate is not "broken"; another appliance's is."""
    own = internal_ca.create_site_certificate(tmp_path / "a", "localhost", ["127.0.0.1"])
    other = internal_ca.create_site_certificate(tmp_path / "b", "localhost", [])
    ca = load_certificate((tmp_path / "a" / "internal-ca.pem").read_bytes())
    now, roots = datetime.now(UTC), load_system_trust_roots()

    issued = describe(own, trust_roots=roots, now=now, internal_ca=ca)
    assert issued.issued_by_internal_ca and issued.chain_trusted
    assert certificate_warnings(issued, now=now, site_hostname="localhost") == []
    foreign = describe(other, trust_roots=roots, now=now, internal_ca=ca)
    assert not foreign.issued_by_internal_ca and not foreign.chain_trusted
    assert warning_kinds(certificate_warnings(foreign, now=now, site_hostname="localhost")) == {
        WarningKind.CHAIN_NOT_TRUSTED
    }


def test_expired_certificate_is_reported_once_as_expired(pki: Pki) -> None:
    leaf = pki.issue_leaf(pki.leaf_key, names=(SITE,), days=(-400, -10))
    bundle = CertificateBundle(leaf, pki.leaf_key, (pki.intermediate,))
    info = describe(bundle, trust_roots=[pki.root])
    assert info.chain_trusted
    assert warning_kinds(certificate_warnings(info, now=NOW, site_hostname=SITE)) == {
        WarningKind.EXPIRED
    }


def test_weak_key_and_wrong_hostname_and_missing_key(pki: Pki) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    leaf = pki.issue_leaf(weak, names=("other.example.com",))
    info = describe(CertificateBundle(leaf, None, (pki.intermediate,)), trust_roots=[pki.root])
    assert (info.key_type, info.key_size) == (KeyType.RSA, 1024)
    assert warning_kinds(certificate_warnings(info, now=NOW, site_hostname=SITE)) == {
        WarningKind.WEAK_KEY,
        WarningKind.HOSTNAME_NOT_COVERED,
        WarningKind.PRIVATE_KEY_MISSING,
    }


def test_system_trust_roots_are_certificates() -> None:
    assert all(isinstance(c, x509.Certificate) for c in load_system_trust_roots())


# -- creating -------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "expected"), [(KeyKind.RSA_3072, 3072), (KeyKind.EC_P256, 256)])
def test_self_signed_key_kinds_and_validity(kind: KeyKind, expected: int) -> None:
    bundle = create_self_signed([SITE], key_kind=kind, validity_days=30, now=NOW)
    info = describe(bundle, now=NOW)
    assert info.key_size == expected and info.key_matches
    assert timedelta(days=29) < info.not_after - NOW <= timedelta(days=30)


@pytest.mark.usefixtures("needs_openssl")
def test_csr_is_read_by_openssl(tmp_path: Path) -> None:
    key = generate_private_key(KeyKind.EC_P256)
    csr = create_csr([SITE, "www.example.com"], key)
    path = tmp_path / "site.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    result = _openssl("req", "-in", str(path), "-verify", "-noout", "-text")
    assert result.returncode == 0, result.stderr
    assert b"DNS:www.example.com" in result.stdout


def test_no_names_is_refused() -> None:
    with pytest.raises(CertificateError, match="at least one host name"):
        create_self_signed([])


# -- exporting and openssl -----------------------------------------------------------


@pytest.mark.usefixtures("needs_openssl")
def test_pkcs12_export_opens_in_openssl_with_aes256(pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "site.p12"
    path.write_bytes(export_pkcs12(pki.bundle, ALL, PASS, friendly_name=SITE))
    info = _openssl("pkcs12", "-info", "-in", str(path), "-passin", f"pass:{PASS}", "-noout")
    assert info.returncode == 0, info.stderr
    assert b"AES-256-CBC" in info.stderr and b"PBES2" in info.stderr
    certs = _openssl("pkcs12", "-in", str(path), "-passin", f"pass:{PASS}", "-nokeys")
    assert certs.stdout.count(b"BEGIN CERTIFICATE") == 2
    wrong = _openssl("pkcs12", "-info", "-in", str(path), "-passin", "pass:wrong", "-noout")
    assert wrong.returncode != 0


@pytest.mark.usefixtures("needs_openssl")
def test_pem_export_opens_in_openssl(pki: Pki, tmp_path: Path) -> None:
    pem = export_pem(pki.bundle, ALL, PASS)
    path = tmp_path / "site.pem"
    path.write_bytes(pem)
    text = _openssl("x509", "-in", str(path), "-noout", "-text")
    assert text.returncode == 0 and SITE.encode() in text.stdout
    key = _openssl("pkey", "-in", str(path), "-passin", f"pass:{PASS}", "-noout")
    assert key.returncode == 0, key.stderr
    assert b"ENCRYPTED PRIVATE KEY" in pem and b"BEGIN PRIVATE KEY" not in pem
    wrong = _openssl("pkey", "-in", str(path), "-passin", "pass:wrong", "-noout")
    assert wrong.returncode != 0


@pytest.mark.parametrize("export_format", list(ExportFormat))
def test_unprotected_key_needs_explicit_consent(pki: Pki, export_format: ExportFormat) -> None:
    with pytest.raises(UnprotectedKeyError, match="needs a passphrase"):
        export_bundle(pki.bundle, ALL, export_format, None)
    data = export_bundle(pki.bundle, ALL, export_format, None, allow_unprotected_key=True)
    again = import_pkcs12(data, "") if export_format is ExportFormat.PKCS12 else import_pem(data)
    assert again.private_key is not None


@pytest.mark.usefixtures("needs_openssl")
def test_unprotected_pem_key_opens_in_openssl(pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(
        export_pem(pki.bundle, ExportSelection(False, True), None, allow_unprotected_key=True)
    )
    assert _openssl("pkey", "-in", str(path), "-noout").returncode == 0


def test_certificate_only_export_needs_no_passphrase(pki: Pki) -> None:
    selection = ExportSelection(certificate=True, chain=True)
    bundle = import_pkcs12(export_pkcs12(pki.bundle, selection, None), "")
    assert bundle.private_key is None and bundle.chain == (pki.intermediate,)
    assert import_pem(export_pem(pki.bundle, selection, None)).chain == (pki.intermediate,)


def test_export_without_selection_or_key_is_refused(pki: Pki) -> None:
    with pytest.raises(CertificateError, match="Choose what to export"):
        export_pkcs12(pki.bundle, ExportSelection(False, False, False), PASS)
    with pytest.raises(CertificateError, match="no private key"):
        export_pem(CertificateBundle(pki.leaf), ALL, PASS)


# -- importing -----------------------------------------------------------------


def test_pkcs12_round_trip_to_another_appliance(pki: Pki) -> None:
    bundle = import_pkcs12(export_pkcs12(pki.bundle, ALL, PASS), PASS)
    assert fingerprint(bundle.certificate) == fingerprint(pki.leaf)
    assert bundle.chain == (pki.intermediate,)
    info = describe(bundle, trust_roots=[pki.root])
    assert certificate_warnings(info, now=NOW, site_hostname=SITE) == []


def test_pkcs12_wrong_passphrase_is_refused_clearly(pki: Pki) -> None:
    data = export_pkcs12(pki.bundle, ALL, PASS)
    with pytest.raises(CertificatePassphraseError, match="passphrase is wrong for this PKCS#12"):
        import_pkcs12(data, "not it")


@pytest.mark.usefixtures("needs_openssl")
def test_openssl_made_pkcs12_imports_and_refuses_wrong_passphrase(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "all.pem").write_bytes(
        export_pem(pki.bundle, ALL, None, allow_unprotected_key=True)
    )
    made = _openssl(
        "pkcs12", "-export", "-in", str(tmp_path / "all.pem"), "-passout", "pass:from openssl"
    )
    assert made.returncode == 0, made.stderr
    bundle = import_pkcs12(made.stdout, "from openssl")
    assert bundle.private_key is not None and bundle.chain == (pki.intermediate,)
    with pytest.raises(CertificatePassphraseError):
        import_pkcs12(made.stdout, "from elsewhere")


def test_key_that_does_not_match_is_refused(pki: Pki) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    other_pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = pki.leaf.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(KeyMismatchError, match="does not belong to certificate"):
        import_pem(cert_pem, other_pem)


def test_pem_import_with_encrypted_key_and_separate_chain(pki: Pki) -> None:
    cert_pem = pki.leaf.public_bytes(serialization.Encoding.PEM)
    chain_pem = pki.intermediate.public_bytes(serialization.Encoding.PEM)
    key_pem = export_pem(pki.bundle, ExportSelection(False, True), "k")
    bundle = import_pem(cert_pem, key_pem, key_passphrase="k", chain=chain_pem)
    assert bundle.chain == (pki.intermediate,) and bundle.private_key is not None
    with pytest.raises(CertificatePassphraseError, match="wrong"):
        import_pem(cert_pem, key_pem, key_passphrase="x")
    with pytest.raises(CertificatePassphraseError, match="enter it"):
        import_pem(cert_pem, key_pem)


def test_der_certificate_loads(pki: Pki) -> None:
    assert load_certificate(pki.leaf.public_bytes(serialization.Encoding.DER)) == pki.leaf


@pytest.mark.parametrize("data", [b"", b"hello", b"-----BEGIN CERTIFICATE-----\nxx\n"])
def test_not_a_certificate(data: bytes) -> None:
    with pytest.raises(NotACertificateError, match="not a certificate"):
        import_pem(data)
    with pytest.raises(NotACertificateError, match="not a PKCS#12"):
        import_pkcs12(data, "x")


def test_not_a_private_key(pki: Pki) -> None:
    with pytest.raises(NotAPrivateKeyError):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


# -- keys at rest ---------------------------------------------------------------


def test_key_vault_seals_with_0600_master_key(pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    vault = KeyVault.open(path, create=True)
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_bytes()) == 32
    leaf_print = fingerprint(pki.leaf)
    record = vault.seal_key(pki.leaf_key, leaf_print)
    assert b"PRIVATE KEY" not in record
    reopened = KeyVault.open(path, create=True)
    key = reopened.unseal_key(record, leaf_print)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.private_numbers() == pki.leaf_key.private_numbers()  # type: ignore[union-attr]
    assert "hidden" in repr(vault)


def test_key_vault_record_opens_only_for_its_certificate(tmp_path: Path) -> None:
    vault = KeyVault.open(tmp_path / "master.key", create=True)
    record = vault.seal(b"key bytes", "aa" * 32)
    with pytest.raises(KeyVaultError, match="belongs to another certificate"):
        vault.unseal(record, "bb" * 32)
    damaged = record[:-1] + bytes([record[-1] ^ 1])
    with pytest.raises(KeyVaultError):
        vault.unseal(damaged, "aa" * 32)
    other = KeyVault.open(tmp_path / "other.key", create=True)
    with pytest.raises(KeyVaultError):
        other.unseal(record, "aa" * 32)
    assert record != vault.seal(b"key bytes", "aa" * 32)


def test_key_vault_refuses_readable_or_missing_master_key(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    KeyVault.open(path, create=True)
    os.chmod(path, 0o644)
    with pytest.raises(KeyVaultError, match="chmod 600"):
        KeyVault.open(path)
    with pytest.raises(KeyVaultError, match="missing"):
        KeyVault.open(tmp_path / "absent.key")


def test_system_trust_roots_can_be_used_for_verification(pki: Pki) -> None:
    roots = load_system_trust_roots()
    info = describe(pki.bundle, trust_roots=roots)
    assert info.chain_complete is False and info.chain_trusted is False
