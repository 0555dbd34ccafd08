"""Vendor records in SQLite through SQLAlchemy 2: customers, sites, appliances,
releases, wave openings, notices sent and bundles handed out.

The update service has its own ``MetaData`` and creates its tables with
``create_all`` when it starts: it is a separate, single-file vendor database
whose schema only grows by new tables, so it has no migration chain.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class CustomerRow(Base):
    __tablename__ = "customers"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    contract_end: Mapped[dt.date] = mapped_column(Date)


class SiteRow(Base):
    __tablename__ = "sites"
    name: Mapped[str] = mapped_column(String(253), primary_key=True)
    customer: Mapped[str] = mapped_column(ForeignKey("customers.name"))
    wave: Mapped[int] = mapped_column(Integer, default=1)


class ApplianceRow(Base):
    __tablename__ = "appliances"
    appliance_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    site: Mapped[str] = mapped_column(ForeignKey("sites.name"))
    public_key: Mapped[str] = mapped_column(String(100))
    enrolled_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ReleaseRow(Base):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("kind", "version", "site"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    version: Mapped[str] = mapped_column(String(50))
    site: Mapped[str | None] = mapped_column(String(253), nullable=True)
    target_path: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(Integer)
    custom: Mapped[dict[str, object]] = mapped_column(JSON)
    published_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class WaveOpeningRow(Base):
    __tablename__ = "wave_openings"
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), primary_key=True)
    wave: Mapped[int] = mapped_column(Integer, primary_key=True)
    opens_on: Mapped[dt.date] = mapped_column(Date)


class NoticeRow(Base):
    """A customer was told by e-mail that a release is ready for one of its sites."""

    __tablename__ = "notices"
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), primary_key=True)
    customer: Mapped[str] = mapped_column(ForeignKey("customers.name"), primary_key=True)
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class HandoutRow(Base):
    """A release handed out in an offline bundle for an appliance download key."""

    __tablename__ = "handouts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appliance_id: Mapped[str] = mapped_column(ForeignKey("appliances.appliance_id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    handed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    key_nonce: Mapped[str] = mapped_column(String(64))
    requested_from: Mapped[str] = mapped_column(String(100))


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_database(data_dir: Path) -> sessionmaker:  # type: ignore[type-arg]
    """Engine and session factory for ``<data>/vendor.db``; creates missing tables."""
    data_dir.mkdir(parents=True, exist_ok=True)
    engine: Engine = create_engine(
        f"sqlite:///{data_dir / 'vendor.db'}", connect_args={"check_same_thread": False}
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)
