"""Queries on the vault's credentials and the SSH Jump Items."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion.jumpoints.models import SshJumpItemRow, VaultCredentialRow


class CredentialRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, row: VaultCredentialRow) -> VaultCredentialRow:
        self._session.add(row)
        self._session.flush()
        return row

    def get(self, row_id: int) -> VaultCredentialRow | None:
        return self._session.get(VaultCredentialRow, row_id)

    def by_name(self, name: str) -> VaultCredentialRow | None:
        query = select(VaultCredentialRow).where(
            func.lower(VaultCredentialRow.name) == name.lower()
        )
        return self._session.scalars(query).first()

    def all(self) -> list[VaultCredentialRow]:
        return list(
            self._session.scalars(select(VaultCredentialRow).order_by(VaultCredentialRow.name))
        )

    def delete(self, row: VaultCredentialRow) -> None:
        self._session.delete(row)
        self._session.flush()


class SshItemRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, row: SshJumpItemRow) -> SshJumpItemRow:
        self._session.add(row)
        self._session.flush()
        return row

    def get(self, row_id: int) -> SshJumpItemRow | None:
        return self._session.get(SshJumpItemRow, row_id)

    def by_name(self, name: str) -> SshJumpItemRow | None:
        query = select(SshJumpItemRow).where(func.lower(SshJumpItemRow.name) == name.lower())
        return self._session.scalars(query).first()

    def all(self) -> list[SshJumpItemRow]:
        return list(self._session.scalars(select(SshJumpItemRow).order_by(SshJumpItemRow.name)))

    def using(self, credential_id: int) -> list[SshJumpItemRow]:
        query = select(SshJumpItemRow).where(SshJumpItemRow.credential_id == credential_id)
        return list(self._session.scalars(query))

    def delete(self, row: SshJumpItemRow) -> None:
        self._session.delete(row)
        self._session.flush()
