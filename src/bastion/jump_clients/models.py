"""The Jump Clients' tables: the installers the site issued and the clients they installed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.platform.db.models import Base, UTCDateTime


class InstallerRow(Base):
    """An installer: what a client installed from it becomes, and until when it works.

    The file handed out carries a random token; only its SHA-256 is kept here, with the
    settings the file must still carry when a client registers with it.
    """

    __tablename__ = "jump_client_installers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    mode: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="jump_client")
    """"jump_client", or "jumpoint": what a client installed from it is."""
    jump_group: Mapped[str] = mapped_column(String(100))
    tag: Mapped[str] = mapped_column(String(100))
    comments: Mapped[str] = mapped_column(Text)
    site_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    installed: Mapped[int] = mapped_column(Integer, default=0)


class JumpClientRow(Base):
    """One installed Jump Client: its identity, where it is, how it is, and what it runs."""

    __tablename__ = "jump_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(40), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="jump_client")
    """"jump_client" (sessions: a shell on its machine), or "jumpoint" (sessions: SSH to
    servers in its network, through SSH Jump Items)."""
    jump_group: Mapped[str] = mapped_column(String(100))
    tag: Mapped[str] = mapped_column(String(100))
    comments: Mapped[str] = mapped_column(Text)
    installer_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    endpoint: Mapped[str] = mapped_column(String(64), index=True)
    """A digest of the machine's own id and hostname: two clients on one machine share it."""
    hostname: Mapped[str] = mapped_column(String(255))
    fqdn: Mapped[str] = mapped_column(String(255))
    os: Mapped[str] = mapped_column(String(255))
    console_user: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(64))
    revision: Mapped[str] = mapped_column(String(64))
    anchors: Mapped[str] = mapped_column(Text)
    """JSON list of the SHA-256 fingerprints of the trust anchors the client trusts."""
    statistics: Mapped[str] = mapped_column(Text)
    """JSON of the latest statistics the client sent."""
    address: Mapped[str] = mapped_column(String(64))
    wake_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_check_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    uninstall_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    upgrade_state: Mapped[str] = mapped_column(String(16), default="")
    """"", "upgrading", "failed" or "done", for the upgrade to `upgrade_version`."""
    upgrade_version: Mapped[str] = mapped_column(String(64), default="")
    upgrade_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    upgrade_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    upgrade_detail: Mapped[str] = mapped_column(Text, default="")
    upgrade_first: Mapped[bool] = mapped_column(Boolean, default=False)
    """Someone tried to jump to it while it waited: it goes to the front of the queue."""
