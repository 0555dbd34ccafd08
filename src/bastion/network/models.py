"""The listen addresses table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastion.platform.db.models import MACHINE_SETTINGS, Base, UTCDateTime


class ListenAddressRow(Base):
    __tablename__ = "listen_addresses"
    __table_args__ = (UniqueConstraint("host", "port"), {"info": MACHINE_SETTINGS})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
