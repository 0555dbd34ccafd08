"""Sessions' tables: every session's record (immutable once ended) and the Jump Groups
each account may use."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bastion.platform.db.models import Base, UTCDateTime


class SessionRow(Base):
    """One session: who jumped where and when, how it ended, and its recording.

    Keyed by a UUID so that records made on two appliances of a broken failover pair
    merge without conflict (R32). Names are copied in: the record outlives renames.
    """

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    jump_client_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    jump_client_name: Mapped[str] = mapped_column(String(200))
    jump_client_hostname: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    """When the Jump Client opened the session's connection."""
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_reason: Mapped[str] = mapped_column(String(500), default="")
    bytes_from_console: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_from_endpoint: Mapped[int] = mapped_column(BigInteger, default=0)
    recording_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    recording_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    input_recorded: Mapped[bool] = mapped_column(Boolean, default=False)


class AccountJumpGroup(Base):
    """A Jump Group a representative may use (administrators use every one)."""

    __tablename__ = "account_jump_groups"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    jump_group: Mapped[str] = mapped_column(String(100), primary_key=True)
