"""Queries on the certificate store's table."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bastion.certificates.models import CertificateRow


class CertificateRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, row: CertificateRow) -> CertificateRow:
        self._session.add(row)
        self._session.flush()
        return row

    def get(self, row_id: int) -> CertificateRow | None:
        return self._session.get(CertificateRow, row_id)

    def by_fingerprint(self, fingerprint: str) -> CertificateRow | None:
        query = select(CertificateRow).where(CertificateRow.fingerprint == fingerprint)
        return self._session.scalars(query).first()

    def all(self) -> list[CertificateRow]:
        query = select(CertificateRow).order_by(CertificateRow.id)
        return list(self._session.scalars(query))

    def pending_requests(self) -> list[CertificateRow]:
        query = select(CertificateRow).where(CertificateRow.pending_request.is_(True))
        return list(self._session.scalars(query.order_by(CertificateRow.id)))

    def default(self) -> CertificateRow | None:
        query = select(CertificateRow).where(CertificateRow.is_default.is_(True))
        return self._session.scalars(query).first()

    def make_default(self, row: CertificateRow) -> None:
        """``row`` becomes the only default certificate."""
        clear = update(CertificateRow).where(CertificateRow.id != row.id).values(is_default=False)
        self._session.execute(clear)
        row.is_default = True
        self._session.flush()

    def delete(self, row: CertificateRow) -> None:
        self._session.delete(row)
        self._session.flush()
