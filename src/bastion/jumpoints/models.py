"""The vault's credentials (sealed at rest) and the SSH Jump Items that use them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.platform.db.models import Base, UTCDateTime


class VaultCredentialRow(Base):
    """A password or a private key for SSH servers, sealed by the appliance's key vault.

    The seal is bound to `seal_id` (random, never reused), so a sealed secret copied onto
    another row does not open there. Backups carry it unsealed inside the encrypted backup
    and seal it again with the receiving appliance's key vault.
    """

    __tablename__ = "vault_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seal_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    """"password" or "private_key"."""
    secret: Mapped[bytes] = mapped_column(LargeBinary, info={"sealed_with": "seal_id"})
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SshJumpItemRow(Base):
    """An SSH server reached through a Jumpoint, with the vaulted credential it takes and
    the host key pinned for it (the only one accepted)."""

    __tablename__ = "ssh_jump_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    jumpoint_id: Mapped[int] = mapped_column(
        ForeignKey("jump_clients.id", ondelete="CASCADE"), index=True
    )
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(100))
    credential_id: Mapped[int] = mapped_column(ForeignKey("vault_credentials.id"), index=True)
    host_key: Mapped[str] = mapped_column(Text)
    jump_group: Mapped[str] = mapped_column(String(100))
    tag: Mapped[str] = mapped_column(String(100))
    comments: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
