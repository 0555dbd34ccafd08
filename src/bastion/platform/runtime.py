"""What a running appliance (or one console command) shares: settings, the database, the
serving state, and each capability's wired parts.

The composition root (`bastion.entrypoints.compose`) builds one `Runtime` and adds the
parts every capability needs (its setup: a hasher, the key vault, the backup site...).
Pages, API routes and console commands ask for a part by its type with :meth:`part`, so
a capability is wired once, the same way for the web, the worker and the console, and
the platform never imports the capabilities above it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bastion.platform.admission import Admission
from bastion.platform.clock import utc_now
from bastion.platform.db.engine import requests_at_once, running_at_once
from bastion.platform.settings import ApplianceSettings
from bastion.platform.unit_of_work import UnitOfWork

T = TypeVar("T")


@dataclass(frozen=True)
class Pause:
    """Changes are refused while an install snapshots and migrates the database: why, and
    until about when (`time.monotonic()`), so that clients are told when to try again."""

    reason: str
    until: float

    def retry_after(self) -> int:
        """Whole seconds until the pause should be over; at least 1."""
        return max(1, math.ceil(self.until - time.monotonic()))


class MissingPartError(LookupError):
    """A capability asked for a part the composition root did not add (a wiring bug)."""


@dataclass
class Runtime:
    settings: ApplianceSettings
    engine: Engine
    session_factory: sessionmaker[Session]
    started_at: datetime = field(default_factory=utc_now)
    serving: bool = False
    """True between the first listener opening and the start of shutdown."""
    stopping: bool = False
    frozen: Pause | None = None
    """While an install snapshots and migrates the database: changes are refused."""
    draining: bool = False
    """Stopping: no new connections, and each answer closes its connection."""
    request_shutdown: Callable[[], None] | None = None
    """Set by the worker; absent when the app runs inside a test or a console command."""
    parts: dict[type, object] = field(default_factory=dict)
    database_requests: Admission = field(init=False)
    """Admits the requests that hold a unit of work: a few at once while they run, and
    no more in all than the pool has connections for (`requests_at_once`)."""

    def __post_init__(self) -> None:
        self.database_requests = Admission(
            total=requests_at_once(self.engine), running=running_at_once(self.engine)
        )

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)

    def add(self, *parts: object) -> None:
        """Make each part available by its own type."""
        for part in parts:
            self.parts[type(part)] = part

    def maybe(self, kind: type[T]) -> T | None:
        """The part of type `kind`, or None where this runtime has none (a console command
        has no listeners; a test's app runs no gateway)."""
        found = self.parts.get(kind)
        return found if isinstance(found, kind) else None

    def part(self, kind: type[T]) -> T:
        """The part of type `kind` the composition root added."""
        found = self.parts.get(kind)
        if not isinstance(found, kind):
            raise MissingPartError(f"this appliance was built without a {kind.__name__}")
        return found
