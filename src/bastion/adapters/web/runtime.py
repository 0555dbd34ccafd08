"""What the web adapters share while the appliance runs, built once by the entry point."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bastion.adapters.ntp import ClockMonitor
from bastion.adapters.passwords import Argon2Hasher
from bastion.domain.lockout import LockoutPolicy
from bastion.services import network
from bastion.services.auth import SessionLimits
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

    def ntp_server(self) -> str:
        with self.uow() as uow:
            return network.ntp_server(uow, self.settings.ntp_server_default)
