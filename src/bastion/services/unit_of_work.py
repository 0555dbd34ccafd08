"""One transaction per request or task: nothing is kept unless the caller commits."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from bastion.adapters.db import repositories as repo
from bastion.adapters.db.certificate_repository import CertificateRepository


class UnitOfWork:
    session: Session

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def __enter__(self) -> UnitOfWork:
        self.session = self._factory()
        self.accounts = repo.AccountRepository(self.session)
        self.sign_in_failures = repo.SignInFailureRepository(self.session)
        self.web_sessions = repo.WebSessionRepository(self.session)
        self.api_clients = repo.ApiClientRepository(self.session)
        self.api_tokens = repo.ApiTokenRepository(self.session)
        self.audit = repo.AuditRepository(self.session)
        self.settings = repo.SettingsRepository(self.session)
        self.listen_addresses = repo.ListenAddressRepository(self.session)
        self.certificates = CertificateRepository(self.session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        self.session.commit()
