"""The certificate store's table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.platform.db.models import Base, UTCDateTime


class CertificateRow(Base):
    """One certificate of the store, or a pending request (CSR) waiting for its certificate.

    ``fingerprint`` is the SHA-256 of the certificate, or of the request while it is
    pending. ``private_key`` is sealed by the key vault; it never lies here in clear.
    """

    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(1000))
    names: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(String(1000))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    key_type: Mapped[str] = mapped_column(String(16))
    key_size: Mapped[int] = mapped_column(Integer)
    certificate_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    chain_pem: Mapped[str] = mapped_column(Text)
    request_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    private_key: Mapped[bytes | None] = mapped_column(
        LargeBinary, nullable=True, info={"sealed_with": "fingerprint"}
    )
    pending_request: Mapped[bool] = mapped_column(Boolean)
    is_default: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
