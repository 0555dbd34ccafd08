"""Queries on the listen addresses table."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.network.models import ListenAddressRow


class ListenAddressRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def all(self) -> list[ListenAddressRow]:
        query = select(ListenAddressRow).order_by(ListenAddressRow.id)
        return list(self._session.scalars(query))

    def get(self, row_id: int) -> ListenAddressRow | None:
        return self._session.get(ListenAddressRow, row_id)

    def find(self, host: str, port: int) -> ListenAddressRow | None:
        query = select(ListenAddressRow).where(
            ListenAddressRow.host == host, ListenAddressRow.port == port
        )
        return self._session.scalars(query).first()

    def add(self, row: ListenAddressRow) -> ListenAddressRow:
        self._session.add(row)
        self._session.flush()
        return row
