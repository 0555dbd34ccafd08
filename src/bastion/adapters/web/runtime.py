"""What the web adapters share while the appliance runs, built once by the entry point."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from cryptography import x509 as cx509
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bastion import release
from bastion.adapters import tls
from bastion.adapters.db.models import Base
from bastion.adapters.key_vault import KeyVault
from bastion.adapters.ntp import ClockMonitor
from bastion.adapters.passwords import Argon2Hasher
from bastion.adapters.x509 import load_certificates, load_system_trust_roots
from bastion.domain.lockout import LockoutPolicy
from bastion.services import certificates, network
from bastion.services.audit import Actor
from bastion.services.auth import SessionLimits
from bastion.services.backup_schedule import Sealer
from bastion.services.backups import BackupSite
from bastion.services.ports import Listeners, utc_now
from bastion.services.unit_of_work import UnitOfWork
from bastion.settings import ApplianceSettings


@dataclass
class Runtime:
    settings: ApplianceSettings
    engine: Engine
    session_factory: sessionmaker[Session]
    hasher: Argon2Hasher
    listeners: Listeners
    clock: ClockMonitor
    ssl_context: ssl.SSLContext | None = None
    started_at: datetime = field(default_factory=utc_now)
    serving: bool = False
    """True between the first listener opening and the start of shutdown."""
    stopping: bool = False
    frozen: str | None = None
    """While an install snapshots and migrates the database: why changes are refused."""
    draining: bool = False
    """Stopping: no new connections, and each answer closes its connection."""
    factory_reset: Callable[[Actor], None] | None = None
    request_shutdown: Callable[[], None] | None = None
    """Set by `bastion appliance serve`; absent when the app runs inside a test."""

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)

    @property
    def lockout(self) -> LockoutPolicy:
        s = self.settings
        return LockoutPolicy(
            free_attempts=s.lockout_free_attempts,
            base_delay=s.lockout_base_delay_seconds,
            max_delay=s.lockout_max_delay_seconds,
            lock_after=s.lockout_lock_after,
            lock_seconds=s.lockout_lock_seconds,
        )

    @property
    def session_limits(self) -> SessionLimits:
        return SessionLimits(
            idle=timedelta(minutes=self.settings.session_idle_minutes),
            maximum=timedelta(hours=self.settings.session_max_hours),
        )

    @property
    def api_token_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.api_token_ttl_seconds)

    def backup_site(self) -> BackupSite:
        """The site as backups see it: its database, name, version and restore hooks."""
        return BackupSite(
            engine=self.engine,
            metadata=Base.metadata,
            data_dir=self.settings.data_dir,
            site_name=self.settings.hostname,
            software_version=release.site_version(),
            unseal_key=self.key_vault.unseal,
            seal_key=self.key_vault.seal,
            after_restore=[self.serve_default_certificate],
        )

    def backup_sealer(self) -> Sealer:
        return Sealer(self.key_vault.seal, self.key_vault.unseal)

    def ntp_server(self) -> str:
        with self.uow() as uow:
            return network.ntp_server(uow, self.settings.ntp_server_default)

    @cached_property
    def key_vault(self) -> KeyVault:
        """Seals the certificate store's private keys."""
        return tls.open_vault(self.settings.certs_dir)

    @cached_property
    def trust_roots(self) -> list[cx509.Certificate]:
        """The roots a browser would trust, and the site's private CAs, read once."""
        extra = self.settings.trust_anchors_file
        private = load_certificates(extra.read_bytes()) if extra else []
        return [*load_system_trust_roots(), *private]

    def certificate_context(self) -> certificates.StoreContext:
        return certificates.StoreContext(self.settings.hostname, self.trust_roots)

    def serve_default_certificate(self) -> None:
        """After a commit that chose a new default: new connections get it, no restart."""
        with self.uow() as uow:
            bundle = certificates.default_bundle(uow, self.key_vault)
        if bundle is None:
            return
        if self.ssl_context is None:
            tls.write_served(self.settings.certs_dir, bundle)
        else:
            tls.serve(self.ssl_context, self.settings.certs_dir, bundle)
