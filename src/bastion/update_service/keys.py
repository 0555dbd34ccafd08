"""Signing keys of the vendor's TUF repository, one PEM file per key.

The key directory holds ``root-<n>.pem`` (one per root key, at least as many
as the root threshold), ``targets.pem``, ``snapshot.pem`` and
``timestamp.pem``. Root keys belong offline: only ``init-repo`` and
``rotate-root-key`` need them. The service needs the other three online.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]
from tuf.api.metadata import Root  # type: ignore[attr-defined]

from bastion.update_service.errors import MissingKeyError

ONLINE_ROLES = ("targets", "snapshot", "timestamp")
ALL_ROLES = ("root", *ONLINE_ROLES)
RETIRED_DIR = "retired"


def write_new_key(path: Path) -> CryptoSigner:
    """Create an Ed25519 key in a file readable by its owner only."""
    signer = CryptoSigner.generate_ed25519()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(signer.private_bytes)
    return signer


def load_signer(path: Path) -> CryptoSigner:
    try:
        private = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise MissingKeyError(f"cannot read signing key {path}: {exc}") from exc
    return CryptoSigner(private)


def generate_keys(keys_dir: Path, root_keys: int) -> list[Path]:
    """Create a full key set; refuse to overwrite an existing one."""
    names = [f"root-{i}.pem" for i in range(1, root_keys + 1)]
    names += [f"{role}.pem" for role in ONLINE_ROLES]
    existing = [n for n in names if (keys_dir / n).exists()]
    if existing:
        raise MissingKeyError(f"{keys_dir} already holds {', '.join(existing)}; not overwritten")
    paths = [keys_dir / n for n in names]
    for path in paths:
        write_new_key(path)
    return paths


def role_key_files(keys_dir: Path, role: str) -> list[Path]:
    pattern = "root-*.pem" if role == "root" else f"{role}.pem"
    return sorted(keys_dir.glob(pattern))


@dataclass
class KeyRing:
    """Signers found in the key directory, by role."""

    keys_dir: Path
    signers: dict[str, list[CryptoSigner]]

    @classmethod
    def from_files(cls, keys_dir: Path) -> KeyRing:
        """Signers by file name, for creating a new repository."""
        signers = {r: [load_signer(p) for p in role_key_files(keys_dir, r)] for r in ALL_ROLES}
        return cls(keys_dir, signers)

    @classmethod
    def for_root(cls, keys_dir: Path, root: Root, extra: tuple[Path, ...] = ()) -> KeyRing:
        """Signers whose key ids the trusted root names, whatever the file name."""
        candidates = [load_signer(p) for p in sorted(keys_dir.glob("*.pem")) + list(extra)]
        signers = {
            role: [s for s in candidates if s.public_key.keyid in root.roles[role].keyids]
            for role in ALL_ROLES
        }
        return cls(keys_dir, signers)

    def require(self, roles: tuple[str, ...], thresholds: dict[str, int]) -> None:
        """Raise MissingKeyError naming every role without enough keys."""
        missing = [
            f"{role} (needs {thresholds.get(role, 1)}, found {len(self.signers.get(role, []))}; "
            f"expected {_expected_file(role)} in {self.keys_dir})"
            for role in roles
            if len(self.signers.get(role, [])) < thresholds.get(role, 1)
        ]
        if missing:
            raise MissingKeyError("missing signing keys for: " + "; ".join(missing))

    def of(self, role: str) -> list[CryptoSigner]:
        return self.signers.get(role, [])


def _expected_file(role: str) -> str:
    return "root-<n>.pem" if role == "root" else f"{role}.pem"
