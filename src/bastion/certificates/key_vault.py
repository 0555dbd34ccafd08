"""Private keys at rest: sealed under a master key kept in a 0600 file."""

from __future__ import annotations

import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.certificates.formats import _key_pem
from bastion.certificates.rules import CertificateError
from bastion.certificates.x509 import load_private_key
from bastion.platform.files import create_once


class KeyVaultError(CertificateError):
    """A sealed private key cannot be opened."""


class KeyVault:
    """Seals private-key PEM with AES-256-GCM under a master key kept in a 0600 file.

    A sealed record is ``b"BKV1" + 12-byte nonce + ciphertext``; the certificate
    fingerprint is the associated data, so a record only opens for its certificate.
    """

    _VERSION = b"BKV1"

    def __init__(self, master_key: bytes):
        if len(master_key) != 32:
            raise KeyVaultError("The certificate master key must be 32 bytes.")
        self._aead = AESGCM(master_key)

    def __repr__(self) -> str:
        return "KeyVault(<master key hidden>)"

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> KeyVault:
        """The vault whose master key is in ``path`` (created, never replaced, if asked)."""
        if create and not path.exists():
            _create_master_key(path)
        try:
            if path.stat().st_mode & 0o077:
                raise KeyVaultError(
                    f"{path} can be read by other users; run 'chmod 600 {path}' and retry."
                )
            return cls(path.read_bytes())
        except FileNotFoundError as exc:
            raise KeyVaultError(
                f"The certificate master key {path} is missing; restore it from a backup."
            ) from exc

    @staticmethod
    def _aad(fingerprint: str) -> bytes:
        return b"bastion-keyvault/1\0" + fingerprint.encode("ascii")

    def seal(self, key_pem: bytes, fingerprint: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return self._VERSION + nonce + self._aead.encrypt(nonce, key_pem, self._aad(fingerprint))

    def unseal(self, record: bytes, fingerprint: str) -> bytes:
        if record[:4] != self._VERSION or len(record) < 4 + 12 + 16:
            raise KeyVaultError("The stored private key record is not valid.")
        try:
            return self._aead.decrypt(record[4:16], record[16:], self._aad(fingerprint))
        except InvalidTag as exc:
            raise KeyVaultError(
                f"The stored private key for certificate {fingerprint[:16]} cannot be opened:"
                " it belongs to another certificate, or the master key was changed."
            ) from exc

    def seal_key(self, key: PrivateKeyTypes, fingerprint: str) -> bytes:
        return self.seal(_key_pem(key, None), fingerprint)

    def unseal_key(self, record: bytes, fingerprint: str) -> PrivateKeyTypes:
        return load_private_key(self.unseal(record, fingerprint), checked=True)


def _create_master_key(path: Path) -> None:
    """Write a new random master key (0600, fsynced); never overwrite an existing one."""
    create_once(path, secrets.token_bytes(32))
