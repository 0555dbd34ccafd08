"""One transaction per request or task: nothing is kept unless the caller commits.

A use case refused with a *recorded* error (see `ServiceError`) keeps its record of the
refusal: the unit of work commits it on the way out.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TypeVar, cast

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session, sessionmaker

from bastion.platform.db.engine import SESSION_CONNECTION
from bastion.platform.db.repositories import AuditRepository, SettingsRepository
from bastion.platform.errors import ServiceError

R = TypeVar("R")


class UnitOfWork:
    """A database session and the repositories on it.

    The platform's own repositories (`audit`, `settings`) are attributes; a
    capability asks for its own with :meth:`repository`, so the platform never
    needs to know the capabilities above it.
    """

    session: Session
    audit: AuditRepository
    settings: SettingsRepository

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def __enter__(self) -> UnitOfWork:
        self.session = self._factory()
        self.audit = AuditRepository(self.session)
        self.settings = SettingsRepository(self.session)
        self._repositories: dict[Callable[[Session], object], object] = {}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if isinstance(exc, ServiceError) and exc.recorded:
                self.session.commit()
        finally:
            self.session.close()  # rolls back whatever was not committed

    def leaves_at_once(self) -> bool:
        """Whether leaving this unit of work without an error cannot wait on the database:
        it never touched it, or (on SQLite, which begins its transaction at the first
        write) it only read. Leaving is then only handing a connection back to the pool."""
        if not self.session.in_transaction():
            return True
        connection: Connection | None = self.session.info.get(SESSION_CONNECTION)
        if connection is None or connection.closed:
            return True  # begun, but no statement ran: a rollback only forgets objects
        if connection.dialect.name != "sqlite":
            return False
        dbapi = connection.connection.dbapi_connection
        return dbapi is not None and not dbapi.in_transaction

    def keep_record_of(self, error: ServiceError) -> None:
        """For a caller that answers a refusal itself: commit the refusal's record."""
        if error.recorded:
            self.session.commit()

    def repository(self, kind: Callable[[Session], R]) -> R:
        """The repository of class `kind` on this transaction (one instance per unit of work)."""
        found = self._repositories.get(kind)
        if found is None:
            found = self._repositories[kind] = kind(self.session)
        return cast(R, found)

    def writing(self) -> None:
        """Take the database's write lock now, before the first read.

        For a transaction that reads, then writes, while other processes write: SQLite
        refuses such a late write outright ("database is locked") when another process
        wrote in between, instead of waiting its turn. PostgreSQL needs nothing here."""
        if self.session.get_bind().dialect.name == "sqlite":
            self.session.execute(text("BEGIN IMMEDIATE"))

    def commit(self) -> None:
        self.session.commit()
